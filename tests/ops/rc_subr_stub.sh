# A stand-in for FreeBSD's /etc/rc.subr, for tests on Linux: just enough of its
# contract (rcvar, required_files, start_precmd, command + command_args, the reserved
# ${name}_program, _flags and _user, pidfile,
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
		# As rc.subr: ${name}_program replaces $command, ${name}_flags goes before
		# $command_args, ${name}_user runs the command through su.
		eval "_program=\${${name}_program}"
		eval "rc_flags=\${${name}_flags}"
		eval "_user=\${${name}_user}"
		if [ -n "$_program" ] || [ -n "$_user" ]; then
			echo "$0: rc.subr would run ${_program:-$command} as user ${_user:-root}"
			return 1
		fi
		[ "$command" = /usr/sbin/daemon ] || { echo "$0: command is not daemon(8)"; return 1; }
		# shellcheck disable=SC2086
		$STUB_DAEMON $rc_flags $command_args
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
