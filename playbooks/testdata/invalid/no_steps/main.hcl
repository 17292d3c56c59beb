variable "nodes" {
  type    = list(object({ name = string }))
  default = [{ name = "a" }, { name = "b" }]
}

node_pool "cluster" {
  plugin = "process"
  nodes  = var.nodes
}
