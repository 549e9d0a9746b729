// Command kube-controller-manager is the upstream controller manager. The
// tests run only its garbage collector and namespace controllers (see
// tests/services/kube.py), so owner references cascade and namespaces delete.
package main

import (
	"os"
	_ "time/tzdata" // CronJob time zones, as in the upstream command

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // JSON log format, as upstream
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics, as upstream
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric, as upstream
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	command := app.NewControllerManagerCommand()
	os.Exit(cli.Run(command))
}
