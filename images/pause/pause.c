/*
 * pause: the process that holds a pod sandbox's namespaces (containerd's sandbox image).
 *
 * It does nothing but wait for signals: SIGTERM or SIGINT end it with status 0 (how the runtime
 * stops a sandbox politely), and SIGCHLD makes it reap every exited child, because as PID 1 of a
 * pod that shares its PID namespace it inherits the orphans of every container. All three are
 * blocked and taken with sigwait(), so no signal arrives between a check and a wait.
 * Built static (`gcc -static`), so the image needs no libc or loader.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

int main(int argc, char **argv)
{
	sigset_t wanted;
	int sig;

	if (argc > 1 && strcmp(argv[1], "-v") == 0) {
		puts("pause (bond-injector) 1");
		return 0;
	}
	sigemptyset(&wanted);
	sigaddset(&wanted, SIGTERM);
	sigaddset(&wanted, SIGINT);
	sigaddset(&wanted, SIGCHLD);
	if (sigprocmask(SIG_BLOCK, &wanted, NULL) != 0) {
		perror("pause: sigprocmask");
		return 1;
	}
	for (;;) {
		if (sigwait(&wanted, &sig) != 0)
			continue;
		if (sig != SIGCHLD)
			return 0;
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
	}
}
