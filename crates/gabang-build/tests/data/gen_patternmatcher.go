// Generates patternmatcher.jsonl: random .dockerignore pattern lists and
// paths, with what moby/patternmatcher (the matcher docker uses) answers
// for MatchesOrParentMatches. Regenerate (Debian: golang-go,
// golang-github-moby-patternmatcher-dev):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go run gen_patternmatcher.go > patternmatcher.jsonl
package main

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"strings"

	"github.com/moby/patternmatcher"
)

type row struct {
	Patterns []string `json:"patterns"`
	Path     string   `json:"path"`
	Excluded bool     `json:"excluded"`
	Error    bool     `json:"error,omitempty"`
}

func main() {
	r := rand.New(rand.NewSource(42))
	pat := []string{"a", "b", "c", "ab", "/", "/", "*", "*", "**", "?", "[ab]", "[^a]", "[a-c]", ".", ".b", "\\*", "x+y", "(z)", "d$", "[", "**/a", "a/**"}
	comp := []string{"a", "b", "c", "ab", "a.b", ".b", "ba", "x+y", "(z)", "d$", "*", "abc"}
	for n := 0; n < 4000; n++ {
		var pats []string
		for k := 0; k < 1+r.Intn(3); k++ {
			var sb strings.Builder
			if k > 0 && r.Intn(3) == 0 {
				sb.WriteString("!")
			}
			for j := 0; j < 1+r.Intn(5); j++ {
				sb.WriteString(pat[r.Intn(len(pat))])
			}
			p := sb.String()
			p = strings.TrimLeft(p, "/")
			if p == "" || p == "!" || strings.HasPrefix(p, "!/") {
				p = "a"
			}
			pats = append(pats, p)
		}
		var parts []string
		for j := 0; j < 1+r.Intn(4); j++ {
			parts = append(parts, comp[r.Intn(len(comp))])
		}
		path := strings.Join(parts, "/")
		out := row{Patterns: pats, Path: path}
		pm, err := patternmatcher.New(pats)
		// patterns compile lazily: a bad one fails the build as soon as it is
		// evaluated, which on a real context is always; force each one here
		for _, p := range pats {
			one, e := patternmatcher.New([]string{strings.TrimPrefix(p, "!")})
			if e == nil {
				_, e = one.MatchesOrParentMatches("x")
			}
			if e != nil {
				err = e
			}
		}
		if err != nil {
			out.Error = true
		} else {
			m, err := pm.MatchesOrParentMatches(path)
			if err != nil {
				out.Error = true
			}
			out.Excluded = m
		}
		b, _ := json.Marshal(out)
		fmt.Println(string(b))
	}
}
