package deployments_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	asynqmetrics "github.com/hibiken/asynq/x/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/pagefleet/pagefleet/internal/config"
	"github.com/pagefleet/pagefleet/internal/redistest"
	"github.com/pagefleet/pagefleet/jobs"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// root is the repository root, relative to this package's directory.
const root = ".."

// composeFile is the top-level compose file.
var composeFile = filepath.Join(root, "docker-compose.yml")

// yamlFiles lists every YAML file under deployments/ and the compose file.
func yamlFiles(t *testing.T) []string {
	t.Helper()
	files := []string{composeFile}
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// decodeAll decodes every document of a YAML file (empty ones dropped).
func decodeAll(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var docs []map[string]any
	for i := 0; ; i++ {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: document %d: %v", path, i, err)
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
	return docs
}

// get walks a decoded YAML/JSON value along keys (string: map key, int:
// list index) and returns nil when any step is missing.
func get(v any, path ...any) any {
	for _, k := range path {
		switch k := k.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case nil:
		return ""
	default:
		return fmt.Sprint(v)
	}
}

func list(v any) []any { l, _ := v.([]any); return l }

// k8sObjects is every Kubernetes object in deployments/kubernetes, keyed by
// file.
func k8sObjects(t *testing.T) map[string][]map[string]any {
	t.Helper()
	out := map[string][]map[string]any{}
	for _, f := range yamlFiles(t) {
		if !strings.HasPrefix(f, "kubernetes"+string(filepath.Separator)) {
			continue
		}
		for _, d := range decodeAll(t, f) {
			if d["kind"] != nil && d["apiVersion"] != nil && d["kind"] != "Kustomization" {
				out[f] = append(out[f], d)
			}
		}
	}
	return out
}

func findObject(t *testing.T, kind, name string) map[string]any {
	t.Helper()
	for _, objs := range k8sObjects(t) {
		for _, o := range objs {
			if o["kind"] == kind && get(o, "metadata", "name") == name {
				return o
			}
		}
	}
	t.Fatalf("no %s %q in deployments/kubernetes", kind, name)
	return nil
}

func TestEveryFileParses(t *testing.T) {
	files := yamlFiles(t)
	if len(files) < 10 {
		t.Fatalf("found only %d YAML files: %v", len(files), files)
	}
	for _, f := range files {
		docs := decodeAll(t, f)
		if len(docs) == 0 {
			t.Errorf("%s: no YAML document", f)
		}
		if !strings.HasPrefix(f, "kubernetes"+string(filepath.Separator)) {
			continue
		}
		for i, d := range docs {
			kind := str(d["kind"])
			if kind == "" || d["apiVersion"] == nil {
				if strings.Contains(f, "prometheus-adapter") {
					continue // Helm values, not an object
				}
				t.Errorf("%s: document %d has no apiVersion/kind", f, i)
				continue
			}
			if kind == "Kustomization" {
				continue
			}
			if get(d, "metadata", "name") == nil {
				t.Errorf("%s: %s without metadata.name", f, kind)
			}
			if ns := str(get(d, "metadata", "namespace")); kind != "Namespace" && ns != "pagefleet" {
				t.Errorf("%s: %s %v in namespace %q, want pagefleet", f, kind, get(d, "metadata", "name"), ns)
			}
		}
	}
	// The example tenants file inside the example Secret parses as well.
	var tenants struct {
		Tenants []map[string]any `yaml:"tenants"`
	}
	for _, d := range decodeAll(t, filepath.Join("kubernetes", "secret.example.yaml")) {
		if s, ok := get(d, "stringData", "tenants.yaml").(string); ok {
			if err := yaml.Unmarshal([]byte(s), &tenants); err != nil {
				t.Errorf("secret.example.yaml tenants.yaml: %v", err)
			}
		}
	}
	if len(tenants.Tenants) == 0 || tenants.Tenants[0]["api_keys"] == nil {
		t.Errorf("secret.example.yaml: no example tenant with api_keys: %v", tenants)
	}

	n := 0
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".json") {
			return err
		}
		n++
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Errorf("%s: %v", p, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Error("no JSON file (the Grafana dashboard) under deployments/")
	}
}

// TestKustomizations: every kustomization lists files (or directories with
// a kustomization) that exist, and every Kubernetes object file is part of
// some kustomization unless it is an example.
func TestKustomizations(t *testing.T) {
	listed := map[string]bool{}
	var found bool
	err := filepath.WalkDir("kubernetes", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Name() != "kustomization.yaml" {
			return err
		}
		found = true
		dir := filepath.Dir(p)
		docs := decodeAll(t, p)
		for _, field := range []string{"resources", "components", "patches"} {
			for _, r := range list(docs[0][field]) {
				name := str(r)
				if m, ok := r.(map[string]any); ok {
					name = str(m["path"])
				}
				if name == "" {
					continue
				}
				target := filepath.Join(dir, name)
				st, err := os.Stat(target)
				switch {
				case err != nil:
					t.Errorf("%s lists %s: %v", p, name, err)
				case st.IsDir():
					if _, err := os.Stat(filepath.Join(target, "kustomization.yaml")); err != nil {
						t.Errorf("%s lists directory %s without a kustomization.yaml", p, name)
					}
				default:
					listed[target] = true
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !found {
		t.Fatal("no kustomization.yaml under deployments/kubernetes")
	}
	for f := range k8sObjects(t) {
		if !listed[f] && !strings.Contains(f, ".example.") {
			t.Errorf("%s is in no kustomization.yaml", f)
		}
	}
}

var varRE = regexp.MustCompile(`PAGEFLEET_[A-Z0-9_]+`)

// setVars is every environment variable the deployment files set: the
// containers' env, ConfigMap and Secret keys (used with envFrom), compose
// environment and Dockerfile ENV.
func setVars(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{} // name → where
	add := func(name, where string) { out[name] = append(out[name], where) }
	for f, objs := range k8sObjects(t) {
		for _, o := range objs {
			switch o["kind"] {
			case "ConfigMap", "Secret":
				for _, field := range []string{"data", "stringData"} {
					m, _ := o[field].(map[string]any)
					for k := range m {
						if !strings.Contains(k, ".") { // files such as tenants.yaml are mounted, not env
							add(k, f)
						}
					}
				}
			default:
				for _, c := range containers(o) {
					for _, e := range list(c["env"]) {
						add(str(get(e, "name")), f)
					}
				}
			}
		}
	}
	for name, svc := range composeServices(t) {
		for k := range composeEnv(t, svc) {
			add(k, "docker-compose.yml "+name)
		}
	}
	for _, df := range dockerfiles(t) {
		for _, st := range df.stages {
			for k := range st.env {
				add(k, df.path)
			}
		}
	}
	return out
}

func containers(o map[string]any) []map[string]any {
	var out []map[string]any
	for _, field := range []string{"containers", "initContainers"} {
		for _, c := range list(get(o, "spec", "template", "spec", field)) {
			if m, ok := c.(map[string]any); ok {
				out = append(out, m)
			}
		}
	}
	return out
}

// TestEnvVarsAreRead: every PAGEFLEET_ variable the deployment files set —
// or even mention — is one the binaries read (config.Vars, itself checked
// against internal/config's code).
func TestEnvVarsAreRead(t *testing.T) {
	set := setVars(t)
	for _, must := range []string{"PAGEFLEET_REDIS_URL", "PAGEFLEET_SHUTDOWN_TIMEOUT", "PAGEFLEET_CHROME_PATH", "PAGEFLEET_ADMIN_TOKEN"} {
		if len(set[must]) == 0 {
			t.Errorf("no deployment file sets %s (is the parser broken?)", must)
		}
	}
	for name, where := range set {
		if strings.HasPrefix(name, "PAGEFLEET_") && !slices.Contains(config.Vars, name) {
			t.Errorf("%s set in %v is not read by the binaries (config.Vars)", name, where)
		}
	}
	// Mentions in comments and notes too.
	files := yamlFiles(t)
	filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasPrefix(d.Name(), "Dockerfile") || strings.HasSuffix(p, ".md") || strings.HasSuffix(p, ".json")) {
			files = append(files, p)
		}
		return err
	})
	files = append(files, filepath.Join(root, ".dockerignore"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range varRE.FindAllString(string(b), -1) {
			if !slices.Contains(config.Vars, name) {
				t.Errorf("%s mentions %s, which the binaries do not read", f, name)
			}
		}
	}
}

// TestSettingsLoad: the values the compose file and the manifests give the
// binaries pass config.Load (secrets aside, which are not in the repository).
func TestSettingsLoad(t *testing.T) {
	load := func(where string, env map[string]string) {
		t.Helper()
		if _, err := config.Load(func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
			t.Errorf("%s: %v", where, err)
		}
	}
	for _, name := range []string{"api", "worker"} {
		svc := composeServices(t)[name]
		if svc == nil {
			t.Fatalf("docker-compose.yml has no service %q", name)
		}
		env := composeEnv(t, svc)
		if env["PAGEFLEET_REDIS_URL"] != "redis://redis:6379/0" {
			t.Errorf("compose %s: PAGEFLEET_REDIS_URL=%q, want redis://redis:6379/0", name, env["PAGEFLEET_REDIS_URL"])
		}
		load("docker-compose.yml "+name, env)
	}
	cm := findObject(t, "ConfigMap", "pagefleet-config")
	for _, name := range []string{"pagefleet-api", "pagefleet-worker"} {
		env := map[string]string{}
		for k, v := range cm["data"].(map[string]any) {
			env[k] = str(v)
		}
		for _, c := range containers(findObject(t, "Deployment", name)) {
			for _, e := range list(c["env"]) {
				if v, ok := get(e, "value").(string); ok {
					env[str(get(e, "name"))] = v
				}
			}
		}
		load("kubernetes "+name, env)
	}
}

// composeServices decodes docker-compose.yml's services.
func composeServices(t *testing.T) map[string]map[string]any {
	t.Helper()
	docs := decodeAll(t, composeFile)
	out := map[string]map[string]any{}
	for name, s := range docs[0]["services"].(map[string]any) {
		out[name], _ = s.(map[string]any)
	}
	return out
}

var interpRE = regexp.MustCompile(`\$\{([A-Za-z0-9_]+)(?::?-([^}]*))?\}`)

// composeEnv is a service's environment with ${VAR:-default} resolved to
// its default.
func composeEnv(t *testing.T, svc map[string]any) map[string]string {
	t.Helper()
	env := map[string]string{}
	switch e := svc["environment"].(type) {
	case map[string]any:
		for k, v := range e {
			env[k] = str(v)
		}
	case []any:
		for _, kv := range e {
			k, v, _ := strings.Cut(str(kv), "=")
			env[k] = v
		}
	}
	for k, v := range env {
		env[k] = interpRE.ReplaceAllString(v, "$2")
	}
	return env
}

func TestCompose(t *testing.T) {
	svcs := composeServices(t)
	for _, name := range []string{"redis", "api", "worker", "prometheus", "grafana"} {
		if svcs[name] == nil {
			t.Errorf("docker-compose.yml has no service %q", name)
		}
	}
	redisCmd := fmt.Sprint(svcs["redis"]["command"])
	for _, want := range []string{"--appendonly yes", "--maxmemory-policy noeviction"} {
		if !strings.Contains(redisCmd, want) {
			t.Errorf("redis command %s lacks %q", redisCmd, want)
		}
	}
	if v := list(get(svcs["redis"], "volumes")); len(v) == 0 || !strings.HasSuffix(str(v[0]), ":/data") {
		t.Errorf("redis has no volume on /data: %v", v)
	}
	w := svcs["worker"]
	if n, _ := get(w, "deploy", "replicas").(int); n < 2 {
		t.Errorf("worker deploy.replicas = %v, want 2 or more", get(w, "deploy", "replicas"))
	}
	if str(w["shm_size"]) == "" {
		t.Error("worker has no shm_size")
	}
	if grace, err := time.ParseDuration(str(w["stop_grace_period"])); err != nil {
		t.Errorf("worker stop_grace_period: %v", err)
	} else if sd, _ := time.ParseDuration(composeEnv(t, w)["PAGEFLEET_SHUTDOWN_TIMEOUT"]); grace <= sd {
		t.Errorf("worker stop_grace_period %s is not longer than PAGEFLEET_SHUTDOWN_TIMEOUT %s", grace, sd)
	}
	// Files the compose file builds from or mounts exist.
	for name, svc := range svcs {
		if df := str(get(svc, "build", "dockerfile")); df != "" {
			if _, err := os.Stat(filepath.Join(root, str(get(svc, "build", "context")), df)); err != nil {
				t.Errorf("service %s: %v", name, err)
			}
		}
		for _, v := range list(svc["volumes"]) {
			src, _, _ := strings.Cut(str(v), ":")
			if strings.HasPrefix(src, "./") {
				if _, err := os.Stat(filepath.Join(root, src)); err != nil {
					t.Errorf("service %s mounts %s: %v", name, src, err)
				}
			}
		}
		if svc["command"] != nil && (name == "api" || name == "worker") {
			t.Errorf("service %s overrides the image's command; the images run the binaries themselves", name)
		}
	}
}

// dockerfile is a parsed Dockerfile: its stages and their instructions.
type dockerfile struct {
	path   string
	stages []*stage
}

type stage struct {
	name, from string
	workdir    string
	env        map[string]string
	runs       []string
	copies     [][]string // args of each COPY
	entrypoint []string
	user       string
}

func dockerfiles(t *testing.T) []*dockerfile {
	t.Helper()
	paths, _ := filepath.Glob(filepath.Join("docker", "Dockerfile.*"))
	if len(paths) < 2 {
		t.Fatalf("Dockerfiles: %v, want Dockerfile.api and Dockerfile.worker", paths)
	}
	var out []*dockerfile
	for _, p := range paths {
		out = append(out, parseDockerfile(t, p))
	}
	return out
}

func parseDockerfile(t *testing.T, path string) *dockerfile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	df := &dockerfile{path: path}
	var lines []string
	var cur strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(l, "#") || (l == "" && cur.Len() == 0) {
			continue
		}
		if strings.HasSuffix(l, "\\") {
			cur.WriteString(strings.TrimSuffix(l, "\\") + " ")
			continue
		}
		cur.WriteString(l)
		lines = append(lines, cur.String())
		cur.Reset()
	}
	var st *stage
	for _, l := range lines {
		instr, args, _ := strings.Cut(l, " ")
		args = strings.TrimSpace(args)
		instr = strings.ToUpper(instr)
		if instr == "FROM" {
			f := strings.Fields(args)
			st = &stage{from: f[0], env: map[string]string{}, workdir: "/"}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			}
			df.stages = append(df.stages, st)
			continue
		}
		if st == nil {
			t.Fatalf("%s: %s before FROM", path, instr)
		}
		switch instr {
		case "WORKDIR":
			st.workdir = args
		case "ENV":
			for _, kv := range strings.Fields(args) {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					t.Errorf("%s: ENV %s: use KEY=value", path, args)
				}
				st.env[k] = strings.Trim(v, `"`)
			}
		case "RUN":
			st.runs = append(st.runs, args)
		case "COPY":
			st.copies = append(st.copies, strings.Fields(args))
		case "USER":
			st.user = args
		case "ENTRYPOINT", "CMD":
			if err := json.Unmarshal([]byte(args), &st.entrypoint); err != nil {
				t.Errorf("%s: %s must be an exec-form JSON array: %v", path, instr, err)
			}
		}
	}
	if len(df.stages) < 2 {
		t.Fatalf("%s: %d stages, want a multi-stage build", path, len(df.stages))
	}
	return df
}

var goBuildRE = regexp.MustCompile(`go build\b.*?-o\s+(\S+)\s+(\./cmd/\S+)`)

// makeBuild is what `make build` produces: output path → package.
func makeBuild(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	in := false
	for _, l := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(l, "build:"):
			in = true
		case in && strings.HasPrefix(l, "\t"):
			l = strings.ReplaceAll(l, "$(GO)", "go")
			if m := goBuildRE.FindStringSubmatch(l); m != nil {
				out[m[1]] = m[2]
			}
		case in:
			in = false
		}
	}
	if len(out) < 2 {
		t.Fatalf("Makefile build target builds %v, want the api and the worker", out)
	}
	return out
}

// TestImagesRunBuiltBinaries: each image builds a binary the way `make
// build` does (same output name, same package, static), copies it into the
// final stage, runs it as its entrypoint, as a non-root user.
func TestImagesRunBuiltBinaries(t *testing.T) {
	built := makeBuild(t)
	entry := map[string]string{} // Dockerfile → binary name
	for _, df := range dockerfiles(t) {
		stages := map[string]*stage{}
		for _, s := range df.stages {
			stages[s.name] = s
		}
		final := df.stages[len(df.stages)-1]
		if len(final.entrypoint) == 0 {
			t.Errorf("%s: no ENTRYPOINT", df.path)
			continue
		}
		bin := final.entrypoint[0]
		if bin == "/usr/bin/tini" {
			if len(final.entrypoint) < 3 || final.entrypoint[1] != "--" {
				t.Errorf("%s: tini entrypoint %v, want tini -- <binary>", df.path, final.entrypoint)
				continue
			}
			bin = final.entrypoint[2]
		}
		// The binary is COPYed from a build stage…
		var from *stage
		var src string
		for _, c := range final.copies {
			if len(c) == 3 && strings.HasPrefix(c[0], "--from=") && c[2] == bin {
				from, src = stages[strings.TrimPrefix(c[0], "--from=")], c[1]
			}
		}
		if from == nil {
			t.Errorf("%s: entrypoint %s is not COPY --from a build stage", df.path, bin)
			continue
		}
		// …that builds it with `go build -o <make's output> <make's package>`.
		ok := false
		for _, r := range from.runs {
			m := goBuildRE.FindStringSubmatch(r)
			if m == nil {
				continue
			}
			out := m[1]
			if !filepath.IsAbs(out) {
				out = filepath.Join(from.workdir, out)
			}
			if out != src {
				continue
			}
			if pkg, inMake := built[m[1]]; !inMake || pkg != m[2] {
				t.Errorf("%s: builds %s from %s; make build makes %v", df.path, m[1], m[2], built)
			}
			if from.env["CGO_ENABLED"] != "0" && !strings.Contains(r, "CGO_ENABLED=0") {
				t.Errorf("%s: %s is not built with CGO_ENABLED=0", df.path, m[1])
			}
			entry[df.path] = filepath.Base(m[1])
			ok = true
		}
		if !ok {
			t.Errorf("%s: no `go build -o %s` in stage %s", df.path, strings.TrimPrefix(src, from.workdir+"/"), from.name)
		}
		if u := strings.Split(final.user, ":")[0]; u == "" || u == "root" || u == "0" {
			t.Errorf("%s: final stage runs as %q, want a non-root USER", df.path, final.user)
		}
	}
	if entry[filepath.Join("docker", "Dockerfile.api")] != "pagefleet-api" || entry[filepath.Join("docker", "Dockerfile.worker")] != "pagefleet-worker" {
		t.Errorf("images run %v, want pagefleet-api and pagefleet-worker", entry)
	}
	for _, df := range dockerfiles(t) {
		if !strings.HasSuffix(df.path, ".worker") {
			continue
		}
		final := df.stages[len(df.stages)-1]
		runs := strings.Join(final.runs, " ")
		for _, pkg := range []string{"chromium-headless-shell", "tini", "ca-certificates", "fonts-liberation", "fonts-noto"} {
			if !strings.Contains(runs, pkg) {
				t.Errorf("%s: the worker image does not install %s", df.path, pkg)
			}
		}
		if final.entrypoint[0] != "/usr/bin/tini" {
			t.Errorf("%s: entrypoint %v, want tini as PID 1", df.path, final.entrypoint)
		}
	}
	// The manifests use those images without overriding what they run.
	for _, name := range []string{"pagefleet-api", "pagefleet-worker"} {
		for _, c := range containers(findObject(t, "Deployment", name)) {
			if c["command"] != nil || c["args"] != nil {
				t.Errorf("%s overrides the image's entrypoint", name)
			}
			want := "pagefleet/" + strings.TrimPrefix(name, "pagefleet-")
			if img, _, _ := strings.Cut(str(c["image"]), ":"); img != want {
				t.Errorf("%s runs image %s, want %s (built from deployments/docker)", name, c["image"], want)
			}
		}
	}
}

// TestWorkerManifest: probes, shared memory and a termination grace period
// that covers the longest job attempt.
func TestWorkerManifest(t *testing.T) {
	longest := (&jobs.RunPayload{Request: spec.Request{TimeoutMs: spec.MaxTimeoutMs}}).Timeout()
	for _, tc := range []struct {
		name string
		port int
	}{{"pagefleet-api", 8080}, {"pagefleet-worker", 9090}} {
		d := findObject(t, "Deployment", tc.name)
		c := containers(d)[0]
		ports := map[string]int{}
		for _, p := range list(c["ports"]) {
			n, _ := get(p, "containerPort").(int)
			ports[str(get(p, "name"))] = n
		}
		for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
			got := str(get(c, probe, "httpGet", "path"))
			port := get(c, probe, "httpGet", "port")
			pn, isInt := port.(int)
			if !isInt {
				pn = ports[str(port)]
			}
			if got != path || pn != tc.port {
				t.Errorf("%s %s: %s on port %v, want %s on %d", tc.name, probe, got, port, path, tc.port)
			}
		}
		if tc.name != "pagefleet-worker" {
			continue
		}
		env := map[string]string{}
		for _, e := range list(c["env"]) {
			env[str(get(e, "name"))] = str(get(e, "value"))
		}
		sd, err := time.ParseDuration(env["PAGEFLEET_SHUTDOWN_TIMEOUT"])
		if err != nil {
			t.Fatalf("worker PAGEFLEET_SHUTDOWN_TIMEOUT: %v", err)
		}
		if sd < longest {
			t.Errorf("worker PAGEFLEET_SHUTDOWN_TIMEOUT %s is shorter than the longest job attempt %s", sd, longest)
		}
		grace, _ := get(d, "spec", "template", "spec", "terminationGracePeriodSeconds").(int)
		// After the shutdown timeout the worker stops Chrome (up to 15 s).
		if time.Duration(grace)*time.Second < sd+15*time.Second {
			t.Errorf("worker terminationGracePeriodSeconds %d is shorter than PAGEFLEET_SHUTDOWN_TIMEOUT %s + 15 s", grace, sd)
		}
		shm := false
		vols := map[string]any{}
		for _, v := range list(get(d, "spec", "template", "spec", "volumes")) {
			vols[str(get(v, "name"))] = v
		}
		for _, m := range list(c["volumeMounts"]) {
			if get(m, "mountPath") == "/dev/shm" {
				v := vols[str(get(m, "name"))]
				shm = get(v, "emptyDir", "medium") == "Memory" && get(v, "emptyDir", "sizeLimit") != nil
			}
		}
		if !shm {
			t.Error("worker has no /dev/shm emptyDir with medium Memory and a sizeLimit")
		}
		if get(c, "resources", "requests") == nil || get(c, "resources", "limits", "memory") == nil {
			t.Error("worker has no resource requests and memory limit")
		}
	}
	for _, name := range []string{"pagefleet-api", "pagefleet-worker"} {
		pdb := findObject(t, "PodDisruptionBudget", name)
		if get(pdb, "spec", "selector", "matchLabels", "app.kubernetes.io/name") != name {
			t.Errorf("PodDisruptionBudget %s selects %v", name, get(pdb, "spec", "selector"))
		}
	}
}

// TestAutoscaling: KEDA watches asynq's pending lists of pagefleet's queues;
// the HPA alternative uses the external metric the adapter rules define.
func TestAutoscaling(t *testing.T) {
	so := findObject(t, "ScaledObject", "pagefleet-worker")
	if get(so, "spec", "scaleTargetRef", "name") != "pagefleet-worker" {
		t.Errorf("ScaledObject targets %v", get(so, "spec", "scaleTargetRef"))
	}
	var lists []string
	for _, tr := range list(get(so, "spec", "triggers")) {
		if get(tr, "type") != "redis" {
			continue
		}
		ln := str(get(tr, "metadata", "listName"))
		lists = append(lists, ln)
		// asynq's internal/base: QueueKeyPrefix(q) + "pending".
		q, ok := strings.CutPrefix(ln, "asynq:{")
		q, ok2 := strings.CutSuffix(q, "}:pending")
		if _, known := jobs.QueueWeights[q]; !ok || !ok2 || !known {
			t.Errorf("KEDA trigger on %q: want asynq:{<queue>}:pending of a pagefleet queue", ln)
		}
		if _, err := strconv.Atoi(str(get(tr, "metadata", "listLength"))); err != nil {
			t.Errorf("KEDA trigger on %q: listLength %v", ln, get(tr, "metadata", "listLength"))
		}
	}
	for _, q := range []string{jobs.QueueInteractive, jobs.QueueBulk} {
		if !slices.Contains(lists, "asynq:{"+q+"}:pending") {
			t.Errorf("KEDA triggers %v do not watch the %s queue", lists, q)
		}
	}

	hpa := findObject(t, "HorizontalPodAutoscaler", "pagefleet-worker")
	if get(hpa, "spec", "scaleTargetRef", "name") != "pagefleet-worker" {
		t.Errorf("HPA targets %v", get(hpa, "spec", "scaleTargetRef"))
	}
	adapter := decodeAll(t, filepath.Join("kubernetes", "overlays", "hpa", "prometheus-adapter-rules.yaml"))[0]
	served := map[string]bool{}
	for _, r := range list(get(adapter, "rules", "external")) {
		served[str(get(r, "name", "as"))] = true
	}
	for _, m := range list(get(hpa, "spec", "metrics")) {
		name := str(get(m, "external", "metric", "name"))
		if !strings.HasPrefix(name, "pagefleet_") || !served[name] {
			t.Errorf("HPA metric %q: want a pagefleet_ external metric the adapter rules serve (%v)", name, served)
		}
	}
}

var metricRE = regexp.MustCompile(`\b((?:pagefleet|asynq)_[a-z0-9_]+)\b`)

// TestMetricNamesExist: every pagefleet_ and asynq_ metric that alerts,
// dashboard and autoscaling rules query is one the binaries export.
func TestMetricNamesExist(t *testing.T) {
	known := codeMetrics(t)
	for name := range asynqMetrics(t) {
		known[name] = true
	}
	var exprs []string
	for _, g := range list(decodeAll(t, filepath.Join("prometheus", "alerts.yml"))[0]["groups"]) {
		for _, r := range list(get(g, "rules")) {
			exprs = append(exprs, str(get(r, "expr")))
		}
	}
	if len(exprs) < 4 {
		t.Fatalf("alerts.yml has %d rules", len(exprs))
	}
	b, err := os.ReadFile(filepath.Join("grafana", "dashboards", "pagefleet.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string                       `json:"title"`
			Targets []struct{ Expr string }      `json:"targets"`
			Source  struct{ UID, Type string }   `json:"datasource"`
			Grid    struct{ H, W, X, Y float64 } `json:"gridPos"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	panels := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
		if len(p.Targets) > 0 {
			panels++
			if p.Source.UID != "prometheus" {
				t.Errorf("panel %q uses datasource %q, want the provisioned uid prometheus", p.Title, p.Source.UID)
			}
		}
	}
	if panels < 8 {
		t.Errorf("dashboard has %d query panels", panels)
	}
	for _, r := range list(get(decodeAll(t, filepath.Join("kubernetes", "overlays", "hpa", "prometheus-adapter-rules.yaml"))[0], "rules", "external")) {
		exprs = append(exprs, str(get(r, "seriesQuery")), str(get(r, "metricsQuery")))
	}
	used := map[string]bool{}
	for _, e := range exprs {
		for _, m := range metricRE.FindAllString(e, -1) {
			used[m] = true
		}
	}
	for _, m := range []string{"pagefleet_jobs_total", "pagefleet_job_run_seconds_bucket", "asynq_queue_latency_seconds",
		"pagefleet_browser_restarts_total", "pagefleet_webhook_deliveries_total", "pagefleet_session_lock_wait_seconds_bucket"} {
		if !used[m] {
			t.Errorf("neither alerts nor dashboard use %s", m)
		}
	}
	var unknown []string
	for m := range used {
		base := m
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(m, suf); ok && known[b] {
				base = b
			}
		}
		if !known[base] {
			unknown = append(unknown, m)
		}
	}
	sort.Strings(unknown)
	if len(unknown) > 0 {
		t.Errorf("queries use metrics nothing exports: %v", unknown)
	}
}

// codeMetrics is every pagefleet_ metric name declared in the code.
func codeMetrics(t *testing.T) map[string]bool {
	t.Helper()
	re := regexp.MustCompile(`Name:\s*"(pagefleet_[a-z0-9_]+)"`)
	out := map[string]bool{}
	for _, dir := range []string{"pkg", "internal", "cmd", "jobs"} {
		filepath.WalkDir(filepath.Join(root, dir), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			for _, m := range re.FindAllStringSubmatch(string(b), -1) {
				out[m[1]] = true
			}
			return nil
		})
	}
	if !out["pagefleet_jobs_total"] {
		t.Fatalf("found no pagefleet_jobs_total in the code: %v", out)
	}
	return out
}

// asynqMetrics is what the asynq queue collector that cmd/api registers
// exports, gathered from a real Redis holding one task.
func asynqMetrics(t *testing.T) map[string]bool {
	t.Helper()
	rdb := redistest.Start(t).Client(t, 0)
	c := asynq.NewClientFromRedisClient(rdb)
	defer c.Close()
	if _, err := c.Enqueue(asynq.NewTask(jobs.KindFetch, []byte(`{}`)), asynq.Queue(jobs.QueueInteractive)); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(asynqmetrics.NewQueueMetricsCollector(asynq.NewInspectorFromRedisClient(rdb)))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, mf := range mfs {
		out[mf.GetName()] = true
	}
	if !out["asynq_queue_size"] {
		t.Fatalf("the asynq collector exported %v", out)
	}
	return out
}

// TestPrometheusConfig: Prometheus scrapes both binaries' /metrics and
// loads the alert rules; Grafana is provisioned with the dashboard.
func TestPrometheusConfig(t *testing.T) {
	cfg := decodeAll(t, filepath.Join("prometheus", "prometheus.yml"))[0]
	ports := map[string]int{}
	for _, sc := range list(cfg["scrape_configs"]) {
		job := str(get(sc, "job_name"))
		for _, sd := range list(get(sc, "dns_sd_configs")) {
			ports[job], _ = get(sd, "port").(int)
		}
		for _, st := range list(get(sc, "static_configs")) {
			for _, tg := range list(get(st, "targets")) {
				_, p, _ := strings.Cut(str(tg), ":")
				ports[job], _ = strconv.Atoi(p)
			}
		}
	}
	if ports["pagefleet-api"] != 8080 || ports["pagefleet-worker"] != 9090 {
		t.Errorf("scrape ports %v, want pagefleet-api on 8080 and pagefleet-worker on 9090", ports)
	}
	for _, rf := range list(cfg["rule_files"]) {
		if _, err := os.Stat(filepath.Join("prometheus", str(rf))); err != nil {
			t.Errorf("rule file %v: %v", rf, err)
		}
	}
	ds := decodeAll(t, filepath.Join("grafana", "provisioning", "datasources", "prometheus.yml"))[0]
	if get(ds, "datasources", 0, "uid") != "prometheus" {
		t.Errorf("datasource uid %v, want prometheus", get(ds, "datasources", 0, "uid"))
	}
	prov := decodeAll(t, filepath.Join("grafana", "provisioning", "dashboards", "pagefleet.yml"))[0]
	path := str(get(prov, "providers", 0, "options", "path"))
	mounted := false
	for _, v := range list(composeServices(t)["grafana"]["volumes"]) {
		parts := strings.Split(str(v), ":")
		if len(parts) >= 2 && parts[1] == path && filepath.Clean(parts[0]) == filepath.Join("deployments", "grafana", "dashboards") {
			mounted = true
		}
	}
	if !mounted {
		t.Errorf("compose does not mount deployments/grafana/dashboards at the provider path %s", path)
	}
}
