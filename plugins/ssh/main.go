// Command upshift-plugin-ssh is the node_pool plugin for nodes on remote
// hosts reached over SSH (golang.org/x/crypto/ssh): host keys verified
// against known_hosts, key or agent authentication, commands sent as
// quoted argument vectors, files edited through SFTP. It has the same
// actions as the process plugin, so the shipped playbook runs unchanged.
package main

import "github.com/upshift-dev/upshift/plugins/sdk"

func main() { sdk.Serve(newPlugin()) }
