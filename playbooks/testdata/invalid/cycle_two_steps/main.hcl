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

step "backup" {
  run = database.main.backup
  with {
    to = "/tmp/x"
  }
  depends_on = [step.copy]
}

step "copy" {
  run = database.main.copy
  with {
    to = "b"
  }
  depends_on = [step.backup]
}
