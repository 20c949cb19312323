/* Small files read whole for file-level images (image/filewalk.py, read_files): a batch
 * of them read without the GIL, each read again while its inode, size, mtime or ctime
 * change under the read, as filewalk.read_file does (tests compare the two). */

#include "walk.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#define TRIES 3
#ifndef O_NOATIME
#define O_NOATIME 0
#endif

enum { GOT_DATA, GOT_NONE, GOT_LARGE };

typedef struct {
    const char *path;
    int state;           /* GOT_*, or an errno (> 0 after the read) to raise */
    int err;
    char *data;
    size_t n;
    struct stat st;      /* after the read */
    int unstable;
} Small;

static int same(const struct stat *a, const struct stat *b) {
    return a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* One file, no Python. */
static void read_one(Small *s, long long limit) {
    for (int attempt = 0; attempt < TRIES; attempt++) {
        int fd = open(s->path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOATIME);
        if (fd < 0) {
            if (errno == ENOENT) s->state = GOT_NONE;
            else s->err = errno;
            return;
        }
        struct stat before;
        if (fstat(fd, &before) < 0) { s->err = errno; close(fd); return; }
        if (!S_ISREG(before.st_mode)) { s->state = GOT_NONE; close(fd); return; }
        if ((long long)before.st_size >= limit) { s->state = GOT_LARGE; close(fd); return; }
        size_t end = (size_t)before.st_size, got = 0;
        free(s->data);
        s->data = malloc(end ? end : 1);
        if (!s->data) { s->err = ENOMEM; close(fd); return; }
        while (got < end) {
            ssize_t r = pread(fd, s->data + got, end - got, (off_t)got);
            if (r < 0) {
                if (errno == EINTR) continue;
                s->err = errno;
                close(fd);
                return;
            }
            if (r == 0) break;
            got += (size_t)r;
        }
        s->n = got;
        if (fstat(fd, &s->st) < 0) { s->err = errno; close(fd); return; }
        close(fd);
        s->state = GOT_DATA;
        s->unstable = !same(&before, &s->st);
        if (!s->unstable) return;
    }
}

/* read_small(paths: list[bytes], limit, os.stat_result) -> [(data, lstat after,
 * unstable) | None (gone, or not a regular file) | False (limit bytes or more)]. */
PyObject *tw_read_small(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *paths, *type;
    long long limit;
    if (!PyArg_ParseTuple(args, "O!LO!", &PyList_Type, &paths, &limit, &PyType_Type, &type))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(paths);
    Small *all = calloc((size_t)(n ? n : 1), sizeof *all);
    if (!all) return PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *p = PyList_GET_ITEM(paths, i);
        if (!PyBytes_Check(p)) {
            free(all);
            return PyErr_Format(PyExc_TypeError, "paths must be bytes");
        }
        all[i].path = PyBytes_AS_STRING(p);  /* the list is held by the caller */
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        read_one(&all[i], limit);
        if (all[i].err) break;
    }
    Py_END_ALLOW_THREADS
    PyObject *out = PyList_New(0);
    for (Py_ssize_t i = 0; out && i < n; i++) {
        Small *s = &all[i];
        PyObject *item = NULL;
        if (s->err) {
            errno = s->err;
            PyErr_SetFromErrnoWithFilename(PyExc_OSError, s->path);
            Py_CLEAR(out);
            break;
        }
        if (s->state == GOT_NONE) item = Py_NewRef(Py_None);
        else if (s->state == GOT_LARGE) item = Py_NewRef(Py_False);
        else item = Py_BuildValue("(y#NO)", s->data, (Py_ssize_t)s->n,
                                  tw_os_stat((PyTypeObject *)type, &s->st),
                                  s->unstable ? Py_True : Py_False);
        if (!item || PyList_Append(out, item) < 0) Py_CLEAR(out);
        Py_XDECREF(item);
    }
    for (Py_ssize_t i = 0; i < n; i++) free(all[i].data);
    free(all);
    return out;
}
