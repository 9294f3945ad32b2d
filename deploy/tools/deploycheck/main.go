// Command deploycheck validates deployment files offline with the upstream projects' own code:
//
//	deploycheck compose FILE      load FILE as Docker Compose does (compose-go: the compose-spec
//	                              JSON schema, interpolation, references between services)
//	deploycheck mongodb FILE...   decode every MongoDBCommunity document in FILE (multi-document
//	                              YAML, e.g. `kustomize build` output) strictly into the MongoDB
//	                              Community Operator's API types: unknown or mistyped fields fail
//	deploycheck dockerfile FILE [NAME=VALUE...]
//	                              lint FILE with BuildKit's Dockerfile frontend, as
//	                              `docker build --check` does, with these build arguments
//	                              (base images are not pulled); any warning fails
//
// Exit status 0 when everything is valid, 1 with one line per problem otherwise, 2 on usage errors.
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	mdbv1 "github.com/mongodb/mongodb-kubernetes-operator/api/v1"
	yamlv3 "gopkg.in/yaml.v3"
	"sigs.k8s.io/yaml"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: deploycheck compose FILE | deploycheck mongodb FILE... | deploycheck dockerfile FILE [NAME=VALUE...]")
		os.Exit(2)
	}
	var problems []string
	switch os.Args[1] {
	case "compose":
		problems = checkCompose(os.Args[2])
	case "mongodb":
		for _, path := range os.Args[2:] {
			problems = append(problems, checkMongoDB(path)...)
		}
	case "dockerfile":
		problems = checkDockerfile(os.Args[2], os.Args[3:])
	default:
		fmt.Fprintf(os.Stderr, "deploycheck: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
	for _, p := range problems {
		fmt.Fprintln(os.Stderr, p)
	}
	if len(problems) > 0 {
		os.Exit(1)
	}
}

func checkCompose(path string) []string {
	abs, err := filepath.Abs(path)
	if err != nil {
		return []string{err.Error()}
	}
	// Interpolation sees only the variables .env.example lists, each with a placeholder: a
	// developer's real .env or environment never changes the result, and a variable the file
	// uses as required (${X:?...}) but .env.example forgets fails the check.
	env, err := exampleEnv(filepath.Join(filepath.Dir(abs), ".env.example"))
	if err != nil {
		return []string{err.Error()}
	}
	opts, err := cli.NewProjectOptions(
		[]string{abs},
		cli.WithWorkingDirectory(filepath.Dir(abs)),
		cli.WithEnv(env),
		cli.WithName("zerocontact"),
	)
	if err != nil {
		return []string{fmt.Sprintf("%s: %v", path, err)}
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		return []string{fmt.Sprintf("%s: %v", path, err)}
	}
	fmt.Printf("%s: valid, %d services\n", path, len(project.Services))
	return nil
}

// exampleEnv reads KEY=VALUE lines of an env file; an empty VALUE becomes a placeholder.
func exampleEnv(path string) ([]string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var env []string
	for _, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("%s: not KEY=VALUE: %q", path, line)
		}
		if value == "" {
			value = "placeholder-for-validation"
		}
		env = append(env, key+"="+value)
	}
	return env, nil
}

func checkMongoDB(path string) []string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	found := 0
	decoder := yamlv3.NewDecoder(bytes.NewReader(raw))
	for index := 0; ; index++ {
		var doc map[string]any
		err := decoder.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return append(problems, fmt.Sprintf("%s: document %d: %v", path, index, err))
		}
		if doc == nil || doc["kind"] != "MongoDBCommunity" {
			continue
		}
		found++
		where := fmt.Sprintf("%s: MongoDBCommunity %v", path, nameOf(doc))
		if doc["apiVersion"] != "mongodbcommunity.mongodb.com/v1" {
			problems = append(problems, fmt.Sprintf("%s: apiVersion %v", where, doc["apiVersion"]))
		}
		text, err := yamlv3.Marshal(doc)
		if err != nil {
			return append(problems, err.Error())
		}
		var mdb mdbv1.MongoDBCommunity
		if err := yaml.UnmarshalStrict(text, &mdb); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", where, err))
			continue
		}
		problems = append(problems, semanticProblems(where, &mdb)...)
	}
	if found == 0 {
		problems = append(problems, fmt.Sprintf("%s: no MongoDBCommunity document", path))
	}
	if len(problems) == 0 {
		fmt.Printf("%s: %d MongoDBCommunity valid\n", path, found)
	}
	return problems
}

// semanticProblems repeats the CRD's required fields and enums that a strict decode cannot see.
func semanticProblems(where string, mdb *mdbv1.MongoDBCommunity) []string {
	var problems []string
	if mdb.Spec.Members < 1 {
		problems = append(problems, where+": spec.members must be >= 1")
	}
	if mdb.Spec.Type != mdbv1.ReplicaSet {
		problems = append(problems, where+": spec.type must be ReplicaSet")
	}
	if mdb.Spec.Version == "" {
		problems = append(problems, where+": spec.version is required")
	}
	if len(mdb.Spec.Security.Authentication.Modes) == 0 {
		problems = append(problems, where+": spec.security.authentication.modes is required")
	}
	for _, user := range mdb.Spec.Users {
		if user.Name == "" || user.DB == "" || user.ScramCredentialsSecretName == "" {
			problems = append(problems, where+": every user needs name, db and scramCredentialsSecretName")
		}
		if len(user.Roles) == 0 {
			problems = append(problems, fmt.Sprintf("%s: user %s has no roles", where, user.Name))
		}
	}
	return problems
}

func nameOf(doc map[string]any) any {
	if meta, ok := doc["metadata"].(map[string]any); ok {
		return meta["name"]
	}
	return "?"
}
