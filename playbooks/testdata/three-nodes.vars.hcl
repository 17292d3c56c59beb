# A 3-node cluster on the local lab's layout, for plan tests.
target_version = "2"
database_b     = "/var/lib/platform/db/b.sqlite"
backup_dir     = "/var/backups/upshift"

load_balancer = {
  plugin = "haproxy"
  config = { socket = "/run/haproxy/admin.sock", backend = "platform" }
}

database = {
  plugin = "sqlite"
  config = { path = "/var/lib/platform/db/a.sqlite" }
}

nodes = [
  { name = "node-1", processing = false, migrate_command = ["platformd", "migrate", "--config", "/etc/platform/node-1.json"] },
  { name = "node-2", processing = true, migrate_command = ["platformd", "migrate", "--config", "/etc/platform/node-2.json"] },
  { name = "node-3", processing = false, migrate_command = ["platformd", "migrate", "--config", "/etc/platform/node-3.json"] },
]
