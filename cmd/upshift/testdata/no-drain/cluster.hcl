# The cluster: one load balancer, one database, one pool of nodes. Switching
# vendor is a change of plugin name (and its config) in the variables.

load_balancer "front" {
  plugin = var.load_balancer.plugin
  config = var.load_balancer.config
}

database "main" {
  plugin = var.database.plugin
  config = var.database.config
}

node_pool "cluster" {
  plugin = var.node_plugin
  config = var.node_config
  nodes  = var.nodes
}

locals {
  nodes_by_name = { for n in var.nodes : n.name => n }
  # The processing node first, then every other node in the order given.
  upgrade_order = concat(
    [for n in var.nodes : n if n.processing],
    [for n in var.nodes : n if !n.processing],
  )
}
