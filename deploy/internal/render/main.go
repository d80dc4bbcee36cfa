// Command render writes the files generated from the CloudFormation
// templates (deploy.RenderFiles) into the repository: `go generate ./deploy`.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/orderpipe/orderpipe/deploy"
)

func main() {
	root := flag.String("root", "..", "the repository's root (go generate runs in deploy/)")
	flag.Parse()
	files, err := deploy.RenderFiles()
	if err != nil {
		fmt.Fprintln(os.Stderr, "render:", err)
		os.Exit(1)
	}
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		if err := os.WriteFile(filepath.Join(*root, p), files[p], 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "render:", err)
			os.Exit(1)
		}
		fmt.Fprintln(os.Stdout, "wrote", p)
	}
}
