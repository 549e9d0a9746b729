// Command kube-apiserver is the upstream kube-apiserver command with an optional
// etcd embedded in the same process, so the vpbx tests need no etcd package.
//
// Flags of this wrapper (all others go to kube-apiserver unchanged):
//
//	--embedded-etcd-dir=DIR         start an embedded etcd with its data in DIR
//	--embedded-etcd-client-port=N   loopback port for etcd clients (required with DIR)
//	--embedded-etcd-peer-port=N     loopback port for etcd peers (required with DIR)
//
// With --embedded-etcd-dir the wrapper appends --etcd-servers pointing at the
// embedded etcd; etcd stops after the API server has shut down.
package main

import (
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // CronJob time zones, as in the upstream command

	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // JSON log format, as upstream
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics, as upstream
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric, as upstream
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

const etcdStartTimeout = 60 * time.Second

type embeddedEtcdOptions struct {
	dataDir    string
	clientPort int
	peerPort   int
}

// splitArgs separates this wrapper's flags from the kube-apiserver flags.
func splitArgs(args []string) (embeddedEtcdOptions, []string, error) {
	var options embeddedEtcdOptions
	var rest []string
	for _, arg := range args {
		name, value, hasValue := strings.Cut(arg, "=")
		switch name {
		case "--embedded-etcd-dir", "--embedded-etcd-client-port", "--embedded-etcd-peer-port":
			if !hasValue || value == "" {
				return options, nil, fmt.Errorf("%s needs a value written as %s=VALUE", name, name)
			}
		default:
			rest = append(rest, arg)
			continue
		}
		switch name {
		case "--embedded-etcd-dir":
			options.dataDir = value
		case "--embedded-etcd-client-port", "--embedded-etcd-peer-port":
			port, err := strconv.Atoi(value)
			if err != nil || port <= 0 || port > 65535 {
				return options, nil, fmt.Errorf("%s: %q is not a TCP port", name, value)
			}
			if name == "--embedded-etcd-client-port" {
				options.clientPort = port
			} else {
				options.peerPort = port
			}
		}
	}
	if options.dataDir != "" && (options.clientPort == 0 || options.peerPort == 0) {
		return options, nil, fmt.Errorf(
			"--embedded-etcd-dir needs --embedded-etcd-client-port and --embedded-etcd-peer-port")
	}
	return options, rest, nil
}

func loopbackURL(port int) url.URL {
	return url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", port)}
}

func startEmbeddedEtcd(options embeddedEtcdOptions) (*embed.Etcd, error) {
	config := embed.NewConfig()
	config.Name = "vpbx-test"
	config.Dir = options.dataDir
	clientURL := loopbackURL(options.clientPort)
	peerURL := loopbackURL(options.peerPort)
	config.ListenClientUrls = []url.URL{clientURL}
	config.AdvertiseClientUrls = []url.URL{clientURL}
	config.ListenPeerUrls = []url.URL{peerURL}
	config.AdvertisePeerUrls = []url.URL{peerURL}
	config.InitialCluster = config.InitialClusterFromName(config.Name)
	// A throwaway test store: durability across power loss buys nothing here,
	// while fsync on every write makes bulk creates (the operator benchmark) slow.
	config.UnsafeNoFsync = true
	config.LogLevel = "warn"
	config.LogOutputs = []string{"stderr"}

	server, err := embed.StartEtcd(config)
	if err != nil {
		return nil, fmt.Errorf("starting embedded etcd: %w", err)
	}
	select {
	case <-server.Server.ReadyNotify():
		return server, nil
	case err := <-server.Err():
		server.Close()
		return nil, fmt.Errorf("embedded etcd failed: %w", err)
	case <-time.After(etcdStartTimeout):
		server.Server.Stop()
		server.Close()
		return nil, fmt.Errorf("embedded etcd not ready after %s", etcdStartTimeout)
	}
}

func main() {
	options, apiserverArgs, err := splitArgs(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "kube-apiserver:", err)
		os.Exit(2)
	}
	var etcd *embed.Etcd
	if options.dataDir != "" {
		etcd, err = startEmbeddedEtcd(options)
		if err != nil {
			fmt.Fprintln(os.Stderr, "kube-apiserver:", err)
			os.Exit(1)
		}
		clientURL := loopbackURL(options.clientPort)
		apiserverArgs = append(apiserverArgs, "--etcd-servers="+clientURL.String())
	}

	command := app.NewAPIServerCommand()
	command.SetArgs(apiserverArgs)
	code := cli.Run(command)

	if etcd != nil {
		etcd.Close()
	}
	os.Exit(code)
}
