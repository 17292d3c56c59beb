//go:build !linux

package host

// mountedNoexec is not known here: a folder on a noexec file system fails
// when the plugin is started, saying so, and UPSHIFT_PLUGIN_EXEC_DIR
// chooses another.
func mountedNoexec(string) bool { return false }
