package artifact

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// FileBackend keeps artifacts in a directory: <dir>/<job id>/<name>, with
// <dir>/<job id>/.<name>.json beside each.
type FileBackend struct {
	dir string
}

// NewFileBackend returns a backend in dir, creating it.
func NewFileBackend(dir string) (*FileBackend, error) {
	if dir == "" || !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("artifact directory %q: must be an absolute path (file:///dir)", dir)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("artifact directory: %w", err)
	}
	return &FileBackend{dir: dir}, nil
}

func (f *FileBackend) paths(key string) (data, meta string, err error) {
	key = path.Clean(key)
	dir, name := path.Split(key)
	if strings.HasPrefix(key, "/") || strings.Contains(key, "..") || dir == "" || name == "" {
		return "", "", fmt.Errorf("artifact key %q: %w", key, ErrBadID)
	}
	return filepath.Join(f.dir, filepath.FromSlash(key)), filepath.Join(f.dir, filepath.FromSlash(dir), "."+name+".json"), nil
}

// Put implements Backend: it writes a temporary file and renames it, so a
// reader sees a whole file or none.
func (f *FileBackend) Put(ctx context.Context, key string, data []byte, o Object) error {
	dp, mp, err := f.paths(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dp), 0o750); err != nil {
		return err
	}
	mb, _ := json.Marshal(o)
	if err := writeAtomic(mp, mb); err != nil {
		return err
	}
	return writeAtomic(dp, data)
}

func writeAtomic(p string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(p), ".tmp-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}

// Get implements Backend.
func (f *FileBackend) Get(ctx context.Context, key string) (io.ReadCloser, Object, error) {
	dp, mp, err := f.paths(key)
	if err != nil {
		return nil, Object{}, err
	}
	var o Object
	mb, err := os.ReadFile(mp)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, Object{}, ErrNotFound
	}
	if err != nil {
		return nil, Object{}, err
	}
	if err := json.Unmarshal(mb, &o); err != nil {
		return nil, Object{}, fmt.Errorf("artifact %s: metadata: %w", key, err)
	}
	fh, err := os.Open(dp)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, Object{}, ErrNotFound
	}
	if err != nil {
		return nil, Object{}, err
	}
	return fh, o, nil
}

// DeletePrefix implements Backend for prefixes "<job id>/".
func (f *FileBackend) DeletePrefix(ctx context.Context, prefix string) error {
	dir := strings.TrimSuffix(prefix, "/")
	if dir == "" || strings.ContainsAny(dir, "/\\") || dir == "." || dir == ".." {
		return fmt.Errorf("artifact prefix %q: %w", prefix, ErrBadID)
	}
	return os.RemoveAll(filepath.Join(f.dir, dir))
}
