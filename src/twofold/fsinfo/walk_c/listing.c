/* Growable buffers, folder listings and the order of a level's keys (scan._list,
 * and the sort in scan.Scanner._level). */

#include "walk.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

int tw_buf_reserve(Buf *b, size_t more) {
    if (b->n + more <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + more) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) { PyErr_NoMemory(); return -1; }
    b->p = p; b->cap = cap;
    return 0;
}

int tw_buf_set(Buf *b, const char *a, size_t na, const char *c, size_t nc, int slash) {
    b->n = 0;
    if (na > PY_SSIZE_T_MAX / 2 || nc > PY_SSIZE_T_MAX / 2) { PyErr_NoMemory(); return -1; }
    if (tw_buf_reserve(b, na + nc + 2) < 0) return -1;
    memcpy(b->p, a, na);
    memcpy(b->p + na, c, nc);
    b->n = na + nc;
    if (slash) b->p[b->n++] = '/';
    b->p[b->n] = 0;
    return 0;
}

void tw_listing_free(Listing *l) {
    free(l->names.p);
    free(l->items);
    memset(l, 0, sizeof *l);
}

int tw_listing_add(Listing *l, const char *name, size_t len, const char *abs,
                   size_t abs_len, char is_dir) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        Item *items = realloc(l->items, cap * sizeof *items);
        if (!items) { PyErr_NoMemory(); return -1; }
        l->items = items; l->cap = cap;
    }
    if (tw_buf_reserve(&l->names, len + abs_len + 2) < 0) return -1;
    Item *it = &l->items[l->n++];
    it->name = l->names.n;
    it->len = len;
    memcpy(l->names.p + l->names.n, name, len);
    l->names.p[l->names.n + len] = 0;
    l->names.n += len + 1;
    it->abs = -1;
    if (abs) {
        it->abs = (ssize_t)l->names.n;
        memcpy(l->names.p + l->names.n, abs, abs_len);
        l->names.p[l->names.n + abs_len] = 0;
        l->names.n += abs_len + 1;
    }
    it->is_dir = is_dir;
    return 0;
}

void tw_here_close(Walk *w, Here *h) {
    if (h->fd >= 0) {
        close(h->fd);
        h->fd = -1;
        w->held--;
    }
    free(h->path.p);
    memset(&h->path, 0, sizeof h->path);
}

/* One name of a folder into the listing: 0, -1 (no memory: a Python error is set), or an
 * errno (reading its type failed). */
static int add_name(Listing *out, int dir_fd, const char *n, unsigned char d_type) {
    if (n[0] == '.' && (n[1] == 0 || (n[1] == '.' && n[2] == 0))) return 0;
    char is_dir = d_type == DT_DIR;
    if (d_type == DT_UNKNOWN) {  /* as DirEntry.is_dir(follow_symlinks=False) */
        struct stat st;
        if (fstatat(dir_fd, n, &st, AT_SYMLINK_NOFOLLOW) == 0)
            is_dir = S_ISDIR(st.st_mode) != 0;
        else if (errno != ENOENT)
            return errno;
    }
    return tw_listing_add(out, n, strlen(n), NULL, 0, is_dir);
}

struct dirent64_raw {  /* what getdents64 fills in */
    unsigned long long d_ino;
    long long d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

/* The names of an open folder, read with getdents64 straight from its descriptor (no
 * duplicate descriptor, no DIR: three fcntl calls and a close fewer per folder than
 * fdopendir). 0, -1 or an errno as add_name. */
static int list_fd(int fd, Listing *out) {
    static _Alignas(8) char buf[65536];  /* one at a time: the GIL is held throughout */
    for (;;) {
        long n = syscall(SYS_getdents64, fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno ? errno : EIO;
        }
        if (n == 0) return 0;
        for (long off = 0; off < n;) {
            struct dirent64_raw *de = (struct dirent64_raw *)(buf + off);
            off += de->d_reclen;
            int r = add_name(out, fd, de->d_name, de->d_type);
            if (r) return r;
        }
    }
}

/* scan._list: the items of a folder, and the folder opened for its walk (by descriptor
 * while fewer than max_held are open, else by path). Returns 0, or an errno. */
int tw_list_dir(Walk *w, const char *name, const char *path, size_t path_len,
                int parent_fd, Listing *out, Here *here) {
    int fd = -1;
    memset(out, 0, sizeof *out);
    memset(here, 0, sizeof *here);
    here->fd = -1;
    if (w->held < w->max_held) {
        fd = parent_fd >= 0 ? openat(parent_fd, name, OPEN_DIR) : open(path, OPEN_DIR);
        if (fd < 0 && errno != EMFILE && errno != ENFILE) return errno ? errno : EIO;
        if (fd >= 0) w->held++;
    }
    here->fd = fd;
    if (tw_buf_set(&here->path, path, path_len, "", 0, 0) < 0) {
        tw_here_close(w, here);
        return -1;
    }
    int e = 0;
    if (fd >= 0) {
        e = list_fd(fd, out);
    } else {
        DIR *d = opendir(path);
        if (!d) {
            e = errno ? errno : EIO;
            tw_here_close(w, here);
            return e;
        }
        for (;;) {
            errno = 0;
            struct dirent *de = readdir(d);
            if (!de) {
                e = errno;
                break;
            }
            e = add_name(out, dirfd(d), de->d_name, de->d_type);
            if (e) break;
        }
        closedir(d);
    }
    if (e) {
        tw_listing_free(out);
        tw_here_close(w, here);
    }
    return e;
}

/* Orders the keys of a level as bytes: a name, or the name followed by "/". */
static const Listing *sort_listing;

static int key_char(const Key *k, size_t i) {
    const Item *it = &sort_listing->items[k->item];
    if (i < it->len) return (unsigned char)sort_listing->names.p[it->name + i];
    return i == it->len && k->sub ? '/' : -1;
}

static int key_cmp(const void *pa, const void *pb) {
    const Key *a = pa, *b = pb;
    const Item *ia = &sort_listing->items[a->item], *ib = &sort_listing->items[b->item];
    size_t m = ia->len < ib->len ? ia->len : ib->len;
    int r = memcmp(sort_listing->names.p + ia->name, sort_listing->names.p + ib->name, m);
    if (r) return r;
    for (size_t i = m;; i++) {
        int ca = key_char(a, i), cb = key_char(b, i);
        if (ca != cb) return ca < cb ? -1 : 1;
        if (ca < 0) return 0;
    }
}

void tw_sort_keys(const Listing *listing, Key *keys, size_t n) {
    sort_listing = listing;
    qsort(keys, n, sizeof *keys, key_cmp);
}
