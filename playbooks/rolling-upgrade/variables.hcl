# Inputs of the rolling upgrade. Set them in a variables file
# (upshift run -var-file cluster.vars.hcl), with -var, or as UPSHIFT_VAR_<name>.

variable "nodes" {
  description = <<-EOT
    The cluster's nodes, in any order: objects with at least `name` (as the
    load balancer knows the server) and `processing` (true for exactly one
    node, upgraded first). The node plugin reads further attributes (address,
    config file, data folder, commands) from the same objects, and
    `migrate_command` is the platform's migration command as an argument list;
    with `--check` appended it must say whether the migration is done (exit 0
    done, 1 not), which settles a migration cut short by a crash on resume.
  EOT
  type        = any

  validation {
    condition     = length(var.nodes) >= 2
    error_message = "A rolling upgrade needs at least two nodes, so one keeps serving while the other is upgraded."
  }
  validation {
    condition     = length([for n in var.nodes : n if try(n.processing, false)]) == 1
    error_message = "Exactly one node must have processing = true: it is upgraded first."
  }
  validation {
    condition     = alltrue([for n in var.nodes : can(n.name) && can(n.migrate_command)])
    error_message = "Every node needs a name and a migrate_command (the platform's migration, as an argument list)."
  }
}

variable "target_version" {
  description = "The platform version to upgrade to (X+1)."
  type        = string
}

variable "load_balancer" {
  description = "Load balancer plugin and its configuration."
  type        = object({ plugin = string, config = any })
}

variable "database" {
  description = "Database plugin and the configuration of the current database (A)."
  type        = object({ plugin = string, config = any })
}

variable "node_plugin" {
  description = "Plugin that controls the nodes: process (local processes) or ssh."
  type        = string
  default     = "process"
}

variable "node_config" {
  description = "Configuration of the node plugin."
  type        = any
  default     = {}
}

variable "database_b" {
  description = "Name of the database copy (B) the upgraded nodes use; a file path for SQLite."
  type        = string
}

variable "backup_dir" {
  description = "Folder for the backups: each run backs up the database and the nodes' data folders into its own sub-folder, named by its run id."
  type        = string
}

variable "database_key" {
  description = "Key in the node configuration that says which database a node uses."
  type        = string
  default     = "db.dsn"
}

variable "version_key" {
  description = "Key in the node configuration that selects the platform version."
  type        = string
  default     = "version"
}

variable "marker" {
  description = "Marker file created in an upgraded node's data folder before it starts."
  type        = string
  default     = "rolling-upgrade"
}

variable "generated_dir" {
  description = "The node's folder of generated files (caches, compiled resources), relative to its data folder: emptied after the migration, before the node starts on X+1."
  type        = string
  default     = "generated"
}

variable "drain_timeout" {
  description = "How long a node may take to finish its in-flight requests once drained."
  type        = string
  default     = "60s"
}

variable "healthy_timeout" {
  description = "How long an upgraded node may take to become healthy."
  type        = string
  default     = "2m"
}

variable "min_in_service" {
  description = "Never take a node out of the load balancer unless this many others are serving."
  type        = number
  default     = 1
}
