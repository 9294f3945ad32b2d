package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/frontend/dockerfile/dockerfile2llb"
	"github.com/moby/buildkit/frontend/dockerui"
	digest "github.com/opencontainers/go-digest"
)

// offlineImages resolves every base image to a minimal config: no registry is reachable, and
// the checks need only the stages' structure, not the base image's contents.
type offlineImages struct{}

func (offlineImages) ResolveImageConfig(_ context.Context, ref string, _ sourceresolver.Opt) (string, digest.Digest, []byte, error) {
	cfg := []byte(`{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/local/bin:/usr/bin:/bin"]}}`)
	return ref, digest.FromBytes(cfg), cfg, nil
}

// checkDockerfile runs BuildKit's Dockerfile frontend in lint mode over every stage, as
// `docker build --check` does: syntax, instruction flags (RUN --mount, COPY --from), and the
// frontend's rules (undefined variables and ARGs in FROM, casing, duplicate stage names, ...).
// Every warning counts as a problem. args are NAME=VALUE build arguments.
func checkDockerfile(path string, args []string) []string {
	dt, err := os.ReadFile(path)
	if err != nil {
		return []string{err.Error()}
	}
	buildArgs := map[string]string{}
	for _, arg := range args {
		name, value, ok := strings.Cut(arg, "=")
		if !ok {
			return []string{fmt.Sprintf("build argument %q: want NAME=VALUE", arg)}
		}
		buildArgs[name] = value
	}
	sourceMap := llb.NewSourceMap(nil, path, "Dockerfile", dt)
	sourceMap.Definition = &llb.Definition{}
	results, err := dockerfile2llb.DockerfileLint(context.Background(), dt, dockerfile2llb.ConvertOpt{
		Config:       dockerui.Config{BuildArgs: buildArgs},
		SourceMap:    sourceMap,
		MetaResolver: offlineImages{},
	})
	if err != nil {
		return []string{fmt.Sprintf("%s: %v", path, err)}
	}
	var problems []string
	for _, w := range results.Warnings {
		line := int32(0)
		if len(w.Location.Ranges) > 0 {
			line = w.Location.Ranges[0].Start.Line
		}
		problems = append(problems, fmt.Sprintf("%s:%d: %s: %s", path, line, w.RuleName, w.Detail))
	}
	if results.Error != nil {
		problems = append(problems, fmt.Sprintf("%s: %s", path, results.Error.Message))
	}
	if len(problems) == 0 {
		fmt.Printf("%s (%s): valid, no lint warnings\n", path, strings.Join(args, " "))
	}
	return problems
}
