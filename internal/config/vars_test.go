package config

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestVarsComplete holds Vars to the names this package's code reads, so
// adding a variable without listing it (and deployment checks that rely on
// the list) fails here.
func TestVarsComplete(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`"(PAGEFLEET_[A-Z0-9_]+)"`)
	read := map[string]bool{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") || f == "vars.go" {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(src), -1) {
			read[m[1]] = true
		}
	}
	if len(read) == 0 {
		t.Fatal("found no PAGEFLEET_ names in the package's code")
	}
	for name := range read {
		if !slices.Contains(Vars, name) {
			t.Errorf("%s is read by package config but missing from Vars", name)
		}
	}
	seen := map[string]bool{}
	for _, name := range Vars {
		if !read[name] {
			t.Errorf("Vars lists %s, which package config never reads", name)
		}
		if seen[name] {
			t.Errorf("Vars lists %s twice", name)
		}
		seen[name] = true
	}
}
