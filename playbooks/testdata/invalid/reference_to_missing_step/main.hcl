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

node_pool "cluster" {
  plugin = "process"
  nodes  = var.nodes
}

step "copy" {
  run = database.main.copy
  with {
    to = "b"
  }
}

step "point" {
  run = node_pool.cluster.set_config
  with {
    node  = "a"
    key   = "db"
    value = step.cpy.result.dsn
  }
}
