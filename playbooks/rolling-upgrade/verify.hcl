# 12. After the run, the end state, asked through the plugins: `upshift run`
#     checks it once the last node is back, and `upshift verify` checks it
#     alone, at any time, on any cluster these variables describe.
verify "load_balancer" {
  description = "Every node is back in rotation and up."
  run         = load_balancer.front.verify
  with {
    servers = [for n in var.nodes : n.name]
  }
}

verify "nodes" {
  description = "Every node runs X+1, takes writes, has its marker, and all of them use one database (B)."
  run         = node_pool.cluster.verify
  with {
    nodes       = [for n in var.nodes : n.name]
    version     = var.target_version
    files       = [var.marker]
    same_config = [var.database_key]
  }
}
