// Command etcd is the etcd server, built from the etcd server module that
// Kubernetes itself requires, so the test control plane needs no download.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
