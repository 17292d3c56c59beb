node_pool "cluster" {
  plugin = "process"
  nodes  = [{ name = "a" }, { address = "127.0.0.1:8080" }]
}
