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
  nodes  = var.nodez
}

step "copy" {
  run = database.main.copy
  with {
    to = local.copy_name
  }
}
