// Package deployments holds no code: its directories are pagefleet's
// deployment files (Dockerfiles, Kubernetes manifests, Prometheus and
// Grafana configuration, Redis notes), and its tests check them statically
// against the code: every file parses, every PAGEFLEET_ variable they set is
// one the binaries read, the images run binaries that `make build` produces,
// and the metric names in alerts and dashboards exist.
package deployments
