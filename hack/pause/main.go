// The pod sandbox ("pause") container of the test plane's node: holds the pod's namespaces open
// and does nothing else until it is told to stop. Built statically and put FROM scratch by
// hack/images.sh pause, so the node needs no image from a registry.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}
