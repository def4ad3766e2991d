// ctap is a Pontus test plugin in C, to show that the plugin ABI is not
// Go's: a WASI preview-1 command that reads the checkout at /src and
// reports TAP 14 on stdout, exiting 1 when a test failed. One test per
// regular file at the top of the checkout: it fails when the file holds
// the word FIX plus ME. With the argument --trap it traps instead (a crash,
// for tests).
//
// Build (Debian: apt-get install clang lld wasi-libc libclang-rt-dev-wasm32):
//
//	clang --target=wasm32-wasi -O2 -Wall -Wextra -Werror -o ctap.wasm ctap.c
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static const char *root = "/src";

// check reports whether path holds the marker; line gets its line number.
static int check(const char *path, int *line) {
	FILE *f = fopen(path, "r");
	if (f == NULL) {
		return -1;
	}
	char buf[4096];
	const char marker[] = {'F', 'I', 'X', 'M', 'E', 0};
	int found = 0;
	*line = 0;
	while (!found && fgets(buf, sizeof buf, f) != NULL) {
		(*line)++;
		found = strstr(buf, marker) != NULL;
	}
	fclose(f);
	return found;
}

int main(int argc, char **argv) {
	if (argc > 1 && strcmp(argv[1], "--trap") == 0) {
		printf("TAP version 14\n");
		fflush(stdout);
		__builtin_trap();
	}
	if (argc > 1) {
		root = argv[1];
	}
	printf("TAP version 14\n");
	DIR *dir = opendir(root);
	if (dir == NULL) {
		printf("1..0 # SKIP cannot open %s\n", root);
		return 1;
	}
	int n = 0, failed = 0;
	struct dirent *e;
	while ((e = readdir(dir)) != NULL) {
		char path[1024];
		struct stat st;
		snprintf(path, sizeof path, "%s/%s", root, e->d_name);
		if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
			continue;
		}
		int line;
		int found = check(path, &line);
		n++;
		if (found == 0) {
			printf("ok %d - %s\n", n, e->d_name);
			continue;
		}
		failed++;
		printf("not ok %d - %s\n  ---\n", n, e->d_name);
		if (found < 0) {
			printf("  message: \"cannot read the file\"\n  ...\n");
		} else {
			printf("  message: \"line %d has a marker\"\n  ...\n", line);
		}
	}
	closedir(dir);
	printf("1..%d\n", n);
	return failed > 0;
}
