variable "drain_timeout" {
  type    = string
  default = "5s"
  validation {
    condition     = can(regex("^[0-9]+m$", var.drain_timeout))
    error_message = "drain_timeout must be whole minutes, such as \"2m\"."
  }
}
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
