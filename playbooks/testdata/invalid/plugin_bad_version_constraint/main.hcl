plugin "haproxy" {
  version = "1.x or newer"
}

load_balancer "front" {
  plugin = "haproxy"
}

step "drain" {
  run = load_balancer.front.drain
  with {
    server = "a"
  }
}
