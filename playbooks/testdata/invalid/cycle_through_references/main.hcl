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

step "check" {
  run        = database.main.check
  depends_on = [step.point]
}

step "copy" {
  run = database.main.copy
  with {
    to = "b"
  }
  depends_on = [step.check]
}

step "point" {
  run = node_pool.cluster.set_config
  with {
    node  = "a"
    key   = "db"
    value = step.copy.result.dsn
  }
}
