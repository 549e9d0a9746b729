// Command kubectl is the upstream kubectl, built from the same Kubernetes
// release as the test kube-apiserver so client and server versions match.
package main

import (
	"os"

	_ "k8s.io/client-go/plugin/pkg/client/auth" // auth plugins, as in the upstream command
	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"
)

func main() {
	// Verbosity must be known before the command is built (kubeconfig and
	// .kuberc are read during construction), so it is read from the raw args.
	if _, err := logs.GlogSetter(cmd.GetLogVerbosity(os.Args)); err != nil {
		os.Stderr.WriteString("kubectl: " + err.Error() + "\n")
	}
	command := cmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		util.CheckErr(err)
	}
}
