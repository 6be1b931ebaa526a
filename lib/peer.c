/* SPDX-License-Identifier: MIT */
/*
 * The process behind a connection to samepaged. A connection can end while
 * its process lives on (it lost the daemon, or was dropped), and that
 * process still maps store pages: the daemon must tell a live process
 * from a dead one without being fooled by a reused pid (a pidfd), and see
 * when one no longer maps its store (it exec'd).
 */
#include "daemon.h"

#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77  /* Linux 6.5 */
#endif

int _sp_peer_pidfd(int sock, pid_t pid)
{
	int pidfd = -1;
	socklen_t len = sizeof(pidfd);
	if (getsockopt(sock, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) == 0 && pidfd >= 0)
		return pidfd;
	/* before 6.5: by pid, from SO_PEERCRED (the process is connected, so
	 * alive, and its pid not yet reusable) */
#ifdef SYS_pidfd_open
	pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
#endif
	return pidfd >= 0 ? pidfd : -1;
}

bool _sp_peer_lives(int pidfd)
{
	if (pidfd < 0)
		return false;
	struct pollfd p = { pidfd, POLLIN, 0 };
	return poll(&p, 1, 0) == 0;  /* readable once it exited */
}

bool _sp_peer_maps_store(pid_t pid, const char *store_name)
{
	char path[64], want[80], line[512];
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	snprintf(want, sizeof(want), "/memfd:%s (deleted)", store_name);
	FILE *f = fopen(path, "re");
	if (!f)
		return true;  /* in doubt, it does */
	bool found = false;
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, want) != NULL;
	fclose(f);
	return found;
}
