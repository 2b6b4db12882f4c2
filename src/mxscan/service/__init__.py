"""What every long-running adapter needs besides its protocol: listening sockets,
the engine in use, privileges, signals and the ``ready`` line.

Written once here so an adapter holds only its protocol. The HTTP adapter runs on
it today; moving the milter and the pipe adapter onto it is issue 14's job.
"""
