load_balancer "front" {
  plugin = "haproxy"
}

node_pool "cluster" {
  plugin = "process"
}
