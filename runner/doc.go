// Package runner owns turning a playbook into a graph of step instances and
// walking it, one file per stage:
//
//   - building the graph (graph_builder.go and the transform_*.go files it
//     applies in order): expansion of for_each and rollouts, joins, edges
//     from references and depends_on, item chains, batch chaining, the
//     cycle check;
//   - scopes and argument decoding per instance (eval.go);
//   - the plan (plan.go) and its renderings as text and JSON
//     (plan_render.go) and the graph's as DOT (graph_dot.go);
//   - the run (run.go): bounded parallelism, resume and the journal; one
//     instance's execution with timeouts and retries (execute.go); undoing
//     failed rollout items (rollback.go); a failure's diagnostics, the
//     playbook's or a plugin's, flattened into one error (diagnostics.go);
//   - the identity of the cluster a playbook points at (identity.go), by
//     which a run's journal is kept and never resumed for another cluster;
//   - the events a run emits (events.go).
//
// It knows nothing of any vendor: plugins are reached through the
// plugins.Provider interface.
package runner
