/* SPDX-License-Identifier: MIT */
/*
 * Description: how samepaged tells the process behind a connection
 * (lib/peer.c), with real processes: a pidfd from the socket
 * (SO_PEERPIDFD) or, failing that, from the pid; alive until it exits,
 * not after, even if its pid is reused; whether it maps a memfd of a
 * given name, before and after it execs.
 */
#include "helpers.h"

#include "daemon.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

/* A child connected to us on *sock that maps a memfd named `name` (if not
 * NULL), then waits for a byte on *go: 'x' exits, 'e' execs sleep. */
static pid_t child(const char *name, int *go, int *sock)
{
	int r[2], g[2];
	assert_int_equal(pipe(r), 0);
	assert_int_equal(pipe(g), 0);
	/* the child connects, as a client of samepaged does: the peer of the
	 * accepted socket is the child (a socketpair's would be its creator) */
	int lst = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path + 1, sizeof(sa.sun_path) - 1, "samepage-peer-test-%d", (int)getpid());
	socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(sa.sun_path + 1));
	assert_int_equal(bind(lst, (struct sockaddr *)&sa, salen), 0);
	assert_int_equal(listen(lst, 1), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(r[0]);
		close(g[1]);
		int cs = socket(AF_UNIX, SOCK_STREAM, 0);
		if (cs < 0 || connect(cs, (struct sockaddr *)&sa, salen))
			_exit(2);
		if (name) {
			int fd = memfd_create(name, MFD_CLOEXEC);
			if (fd < 0 || ftruncate(fd, 4096) || mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0) == MAP_FAILED)
				_exit(3);
			close(fd);  /* the mapping stays */
		}
		char c = 'r';
		if (write(r[1], &c, 1) != 1 || read(g[0], &c, 1) != 1)
			_exit(4);
		if (c == 'e')
			execl("/bin/sleep", "sleep", "30", (char *)NULL);
		_exit(0);
	}
	close(r[1]);
	close(g[0]);
	*sock = accept4(lst, NULL, NULL, SOCK_CLOEXEC);
	assert_true(*sock >= 0);
	close(lst);
	char c;
	assert_int_equal(read(r[0], &c, 1), 1);
	close(r[0]);
	*go = g[1];
	return pid;
}

static void tell(int go, char c)
{
	assert_int_equal(write(go, &c, 1), 1);
}

static void test_pidfd_sees_exit(void **state)
{
	(void)state;
	int go, sock;
	pid_t pid = child(NULL, &go, &sock);
	int from_socket = _sp_peer_pidfd(sock, pid);  /* SO_PEERPIDFD, or by pid */
	int from_pid = _sp_peer_pidfd(-1, pid);       /* not a socket: by pid */
	if (from_pid < 0)
		SKIP_BECAUSE("pidfd_open is not available (Linux 5.3)");
	assert_true(from_socket >= 0);
	assert_true(_sp_peer_lives(from_socket));
	assert_true(_sp_peer_lives(from_pid));
	tell(go, 'x');
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);  /* reaped: its pid may be reused */
	assert_false(_sp_peer_lives(from_socket));
	assert_false(_sp_peer_lives(from_pid));
	assert_false(_sp_peer_lives(-1));  /* without a pidfd: not known alive */
	close(from_socket);
	close(from_pid);
	close(go);
	close(sock);
}

static void test_maps_store_until_exec(void **state)
{
	(void)state;
	int go, sock;
	pid_t pid = child("peer-test-store", &go, &sock);
	assert_true(_sp_peer_maps_store(pid, "peer-test-store"));
	assert_false(_sp_peer_maps_store(pid, "peer-test-stor"));  /* a name, not a prefix */
	assert_false(_sp_peer_maps_store(pid, "peer-test-store2"));
	tell(go, 'e');
	bool maps = true;
	for (int i = 0; i < 200 && maps; i++) {
		usleep(10000);
		maps = _sp_peer_maps_store(pid, "peer-test-store");
	}
	assert_false(maps);  /* exec'd: the mapping is gone, the process is not */
	assert_int_equal(kill(pid, 0), 0);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	/* in doubt (no such process), it maps */
	assert_true(_sp_peer_maps_store(pid, "peer-test-store"));
	close(go);
	close(sock);
}

int main(int argc, char **argv)
{
	struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pidfd_sees_exit),
		cmocka_unit_test(test_maps_store_until_exec),
	};
	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	return cmocka_run_group_tests_name("peer", tests, NULL, NULL);
}
