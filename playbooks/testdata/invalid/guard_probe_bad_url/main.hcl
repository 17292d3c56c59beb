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
  guard {
    max_errors = 3
    probe {
      url = "ftp://lb.example/healthz"
    }
  }
  step "stop" {
    run = node_pool.cluster.stop
    with {
      node = each.value.name
    }
  }
}
