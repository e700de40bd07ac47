# Source this: a podman Docker-API service for the container launcher's tests (and for users without
# Docker). Storage and configuration live under PODMAN_DIR (kept between runs, so built images are too);
# the service answers on unix://$PODMAN_DIR/podman.sock, exported as DOCKER_HOST. `podman_stop` ends it.
# Settings measured on this machine kind (see README, "Containers"): runc (crun fails on hybrid
# cgroups), cgroupfs, host networking by default, ulimits within the host's hard limits.
PODMAN_DIR="${PODMAN_DIR:-$HOME/.cache/packager-podman}"
mkdir -p "$PODMAN_DIR/root" "$PODMAN_DIR/runroot" "$PODMAN_DIR/tmp"
nofile=$(ulimit -Hn); nproc=$(ulimit -Hu); pid_max=$(cat /proc/sys/kernel/pid_max)
[ "$nofile" = unlimited ] && nofile=1048576
# runc cannot set nproc above pid_max here ("error setting rlimit type 6: operation not permitted").
{ [ "$nproc" = unlimited ] || [ "$nproc" -gt "$pid_max" ]; } && nproc=$pid_max
cat > "$PODMAN_DIR/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$PODMAN_DIR/root"
runroot = "$PODMAN_DIR/runroot"
CONF
cat > "$PODMAN_DIR/containers.conf" <<CONF
[containers]
netns = "host"
cgroups = "enabled"
log_driver = "k8s-file"
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
tmp_dir = "$PODMAN_DIR/tmp"
CONF
export CONTAINERS_STORAGE_CONF="$PODMAN_DIR/storage.conf" CONTAINERS_CONF="$PODMAN_DIR/containers.conf"
export DOCKER_HOST="unix://$PODMAN_DIR/podman.sock"
podman_start() {
  rm -f "$PODMAN_DIR/podman.sock"
  podman system service --time=0 "$DOCKER_HOST" > "$PODMAN_DIR/service.log" 2>&1 &
  PODMAN_PID=$!
  for _ in $(seq 50); do [ -S "$PODMAN_DIR/podman.sock" ] && return 0; sleep 0.1; done
  echo "podman's API service did not start: $(tail -5 "$PODMAN_DIR/service.log")" >&2
  return 1
}
podman_stop() { [ -n "${PODMAN_PID:-}" ] && kill "$PODMAN_PID" 2>/dev/null; wait "${PODMAN_PID:-}" 2>/dev/null; true; }
