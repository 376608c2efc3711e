// yaml-oracle converts YAML documents to JSON with sigs.k8s.io/yaml over gopkg.in/yaml.v2, the
// decoder kubectl applies manifests with, so that hostguard's reading can be compared with it.
//
// Input (stdin): a JSON array of strings, each one kubectl document (what apimachinery's
// YAMLReader yields between `---` lines). Output (stdout): a JSON array with, for each input,
// {"json": <the document as JSON>} or {"error": "<why the decoder refused it>"}.
//
// kubectl decodes each document into a runtime.RawExtension, which has its own UnmarshalJSON, so
// sigs.k8s.io/yaml converts it with no target type (no string coercion): exactly YAMLToJSON.
//
// Built by tests/yaml-oracle/build in GOPATH mode against Debian's golang-k8s-sigs-yaml-dev and
// golang-gopkg-yaml.v2-dev; no network.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"sigs.k8s.io/yaml"
)

type result struct {
	JSON  json.RawMessage `json:"json,omitempty"`
	Error *string         `json:"error,omitempty"`
}

func convert(doc string) (r result) {
	// go-yaml v2 reports some failures as panics of its own; a refusal either way.
	defer func() {
		if p := recover(); p != nil {
			msg := fmt.Sprintf("panic: %v", p)
			r = result{Error: &msg}
		}
	}()
	out, err := yaml.YAMLToJSON([]byte(doc))
	if err != nil {
		msg := err.Error()
		return result{Error: &msg}
	}
	return result{JSON: out}
}

func main() {
	input, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "yaml-oracle: reading stdin:", err)
		os.Exit(2)
	}
	var docs []string
	if err := json.Unmarshal(input, &docs); err != nil {
		fmt.Fprintln(os.Stderr, "yaml-oracle: stdin is not a JSON array of strings:", err)
		os.Exit(2)
	}
	results := make([]result, len(docs))
	for i, doc := range docs {
		results[i] = convert(doc)
	}
	out, err := json.Marshal(results)
	if err != nil {
		fmt.Fprintln(os.Stderr, "yaml-oracle: encoding results:", err)
		os.Exit(2)
	}
	os.Stdout.Write(out)
	os.Stdout.Write([]byte("\n"))
}
