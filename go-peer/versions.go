package main

import (
	"runtime/debug"
	"strings"
)

// reportedModules are the libraries whose compiled-in versions `started` lists.
var reportedModules = []string{
	"github.com/libp2p/go-libp2p",
	"github.com/libp2p/go-libp2p-pubsub",
	"github.com/libp2p/go-yamux/v4", // go-libp2p before v0.40
	"github.com/libp2p/go-yamux/v5",
	"github.com/quic-go/quic-go",
}

// libraryVersions reads the versions linked into this binary, so the report
// cannot drift from go.mod.
func libraryVersions() map[string]string {
	versions := make(map[string]string)
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return versions
	}
	for _, dep := range info.Deps {
		for _, name := range reportedModules {
			if dep.Path != name {
				continue
			}
			switch {
			case dep.Replace != nil && dep.Replace.Path != "" && isLocalPath(dep.Replace.Path):
				// A local checkout (images/go/build with MESHGATE_GO_PATH)
				// has no version of its own ("(devel)"): name the one it replaces.
				versions[name] = dep.Version + "+local"
			case dep.Replace != nil && dep.Replace.Version != "":
				versions[name] = dep.Replace.Version
			default:
				versions[name] = dep.Version
			}
		}
	}
	return versions
}

// isLocalPath tells a directory replacement from a module one, as go.mod does.
func isLocalPath(path string) bool {
	return strings.HasPrefix(path, "/") || strings.HasPrefix(path, "./") || strings.HasPrefix(path, "../")
}

// userAgent is what identify announces, like rust-libp2p's "rust-libp2p/<version>".
func userAgent() string {
	if v, ok := libraryVersions()["github.com/libp2p/go-libp2p"]; ok {
		return "go-libp2p/" + v
	}
	return "go-libp2p"
}
