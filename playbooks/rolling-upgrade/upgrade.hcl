# The rolling upgrade from X to X+1 without downtime. Old nodes keep serving
# reads from database A, which takes no writes while they run (read-only);
# upgraded nodes serve reads and writes on B.

# 0. Before anything changes, every problem that would stop the run halfway
#    (upshift check runs these alone). A failed preflight changes nothing.
preflight "load_balancer" {
  description = "The load balancer answers, has every node in rotation, and can spare one at a time."
  run         = load_balancer.front.preflight
  with {
    servers        = [for n in var.nodes : n.name]
    min_in_service = var.min_in_service
    max_parallel   = 1
  }
}

preflight "database" {
  description = "Database A answers with the privileges backup and copy need; B is absent (or this run's); the backup folder has room."
  run         = database.main.preflight
  with {
    to         = var.database_b
    run_id     = run.id
    backup_dir = var.backup_dir
  }
}

preflight "nodes" {
  description = "Every node runs as the plugin knows it, is healthy, all on one version, and none on the target yet."
  run         = node_pool.cluster.preflight
  with {
    nodes  = [for n in var.nodes : n.name]
    target = var.target_version
  }
}

# 1. Every node in full read-only mode: reads are served, writes refused cleanly.
step "read_only" {
  description = "Put the node in full read-only mode."
  for_each    = local.nodes_by_name
  run         = node_pool.cluster.read_only
  with {
    node    = each.key
    enabled = true
  }
}

# 2. Back up the environment: the database and each node's data folder,
#    into a folder of this run's own (backup_dir/<run id>), so that no run
#    ever overwrites the backups of another; a resumed run keeps its id.
step "backup" {
  description = "Back up database A."
  run         = database.main.backup
  with {
    to = "${var.backup_dir}/${run.id}/database-before-upgrade.backup"
  }
  depends_on = [step.read_only]
}

step "backup_data" {
  description = "Back up the node's data folder."
  for_each    = local.nodes_by_name
  run         = node_pool.cluster.backup_data
  with {
    node = each.key
    to   = "${var.backup_dir}/${run.id}/data-${each.key}"
  }
  depends_on = [step.read_only]
}

# 3. Copy the database A -> B, for the upgraded nodes.
step "copy" {
  description = "Copy database A to B."
  run         = database.main.copy
  with {
    to     = var.database_b
    run_id = run.id # an existing B is adopted only when this run made it
  }
  depends_on = [step.read_only]
}

# 4-11. The processing node first, then every other node, one at a time.
rollout "upgrade" {
  description  = "Upgrade one node at a time, the processing node first."
  over         = local.upgrade_order
  max_parallel = 1
  on_failure   = "halt"
  # The first node's drain runs while backup and copy do: writes are
  # refused from read-only until that node takes them on X+1, and a drain
  # waits for sessions to end (up to var.drain_timeout), so overlapping it
  # with the copy takes it out of the write outage. Nothing on the node
  # changes before backup and copy are done (stop waits for them).
  depends_on = [step.read_only]
  # To stop after the processing node until an operator approves
  # (upshift run again, or upshift approve), and to wait between the
  # other nodes:
  #   pause_after_batch = [1]
  #   bake              = "30s"

  step "drain" {
    description = "Take the node out of the load balancer once its in-flight requests are done."
    run         = load_balancer.front.drain
    with {
      server         = each.value.name
      timeout        = var.drain_timeout
      min_in_service = var.min_in_service
    }
  }

  step "stop" {
    run = node_pool.cluster.stop
    with {
      node = each.value.name
    }
    depends_on = [step.backup, step.backup_data, step.copy]
  }

  step "point" {
    description = "Point the node to database B."
    run         = node_pool.cluster.set_config
    with {
      node  = each.value.name
      key   = var.database_key
      value = step.copy.result.dsn
    }
  }

  step "install" {
    description = "Switch the node to version X+1."
    run         = node_pool.cluster.set_config
    with {
      node  = each.value.name
      key   = var.version_key
      value = var.target_version
    }
  }

  step "migrate" {
    description = "Run the platform's migration against database B and the data folder."
    run         = node_pool.cluster.exec
    timeout     = "10m"
    with {
      node    = each.value.name
      command = each.value.migrate_command
      # Asked on resume when the step was cut short (upshift or its plugin
      # died): exit 0 means the data is already migrated.
      check = concat(each.value.migrate_command, ["--check"])
    }
  }

  # Generated files (caches, compiled resources) are the old version's:
  # the node rebuilds them on demand, so they go before it starts on X+1.
  step "purge_generated" {
    description = "Empty the node's folder of generated files, rebuilt on demand by X+1."
    run         = node_pool.cluster.purge_generated
    with {
      node = each.value.name
      path = var.generated_dir
    }
  }

  step "marker" {
    description = "Let X+1 run alongside the X nodes still serving."
    run         = node_pool.cluster.touch
    with {
      node = each.value.name
      path = var.marker
    }
  }

  # The point of no return: once the processing node runs X+1 on B, B is
  # the truth. A failure before it returns the cluster to X (config put
  # back, nodes started, B dropped, read-only released); after it, the run
  # halts with the cluster serving and says which nodes are where.
  step "start" {
    description        = "Start the node on X+1; it is no longer read-only."
    run                = node_pool.cluster.start
    point_of_no_return = true
    with {
      node = each.value.name
    }
  }

  step "healthy" {
    run = node_pool.cluster.wait_healthy
    with {
      node    = each.value.name
      timeout = var.healthy_timeout
      # The node must be the new version and take writes: a node that
      # answers but is still X, or still read-only, is not done.
      version  = var.target_version
      writable = true
    }
  }

  step "enable" {
    description = "Give the node traffic again."
    run         = load_balancer.front.enable
    with {
      server = each.value.name
    }
  }
}
