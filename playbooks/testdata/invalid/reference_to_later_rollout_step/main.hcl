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

rollout "upgrade" {
  over = var.nodes
  step "stop" {
    run = node_pool.cluster.stop
    with {
      node = step.start.result.node
    }
  }
  step "start" {
    run = node_pool.cluster.start
    with {
      node = each.value.name
    }
  }
}
