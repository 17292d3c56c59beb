variable "nodes" {
  type    = list(object({ name = string }))
  default = [{ name = "a" }, { name = "b" }]
}

load_balancer "front" {
  plugin = "haproxy"
}

database "main" {
  plugin = "sqlite"
}

locals {
  pool_nodes = var.nodes
}

node_pool "cluster" {
  plugin = "process"
  nodes  = local.pool_node
}

step "copy" {
  run = database.main.copy
  with {
    to = "copy"
  }
}
