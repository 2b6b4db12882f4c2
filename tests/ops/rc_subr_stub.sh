# A stand-in for FreeBSD's /etc/rc.subr, for tests on Linux: just enough of its
# contract (rcvar, required_files, start_precmd, command + command_args, pidfile,
# stop_postcmd, extra_commands' *_cmd) to run an rc.d script's start, stop, reload
# and configtest. $STUB_DAEMON stands in for /usr/sbin/daemon.
# shellcheck shell=sh disable=SC2154

load_rc_config() { :; }

checkyesno() {
	eval "_value=\${$1}"
	case "$_value" in
	[Yy][Ee][Ss] | [Tt][Rr][Uu][Ee] | [Oo][Nn] | 1) return 0 ;;
	*) return 1 ;;
	esac
}

run_rc_command() {
	if ! checkyesno "$rcvar"; then
		echo "Cannot '$1' $name. Set $rcvar to YES in /etc/rc.conf."
		return 0
	fi
	case "$1" in
	start)
		for _f in $required_files; do
			[ -r "$_f" ] || { echo "$0: required file $_f not readable"; return 1; }
		done
		if [ -n "$start_precmd" ]; then $start_precmd || return 1; fi
		# shellcheck disable=SC2086
		$STUB_DAEMON $command_args
		;;
	stop)
		_pid=$(cat "$pidfile") || return 1
		kill -TERM "$_pid"
		while kill -0 "$_pid" 2>/dev/null; do sleep 0.1; done
		if [ -n "$stop_postcmd" ]; then $stop_postcmd; fi
		;;
	*)
		eval "_cmd=\${$1_cmd}"
		$_cmd
		;;
	esac
}
