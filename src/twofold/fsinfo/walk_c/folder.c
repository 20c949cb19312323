/* One folder's entries with their lstat, extended attributes and (symlinks) targets, for
 * file-level images
 * (image/filewalk.py, scan): every system call made without the GIL, then one Python
 * object per entry. The same result as filewalk's Python scan, which tests compare. */

#include "walk.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/xattr.h>
#include <unistd.h>

typedef struct {
    size_t name, len;   /* the name in the names buffer */
    struct stat st;
    size_t xa, xalen;   /* its xattrs in the xattr buffer: name NUL, 4-byte length, value */
    size_t link, linklen; /* a symlink's target in the targets buffer */
    int gone;           /* vanished between the listing and the lstat */
} FEnt;

typedef struct {
    Buf names, xattrs, full, targets;
    FEnt *ents;
    size_t n, cap;
    int err;            /* errno of a failure that raises, else 0 */
    const char *failed; /* what failed */
} Folder;

static int by_name(const void *a, const void *b, void *names) {
    const FEnt *x = a, *y = b;
    return strcmp((const char *)names + x->name, (const char *)names + y->name);
}

/* Buffers grown without the GIL (listing.c's raise MemoryError, which needs it). */
static int grow(Buf *b, size_t more) {
    if (b->n + more <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + more) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

static int put(Buf *b, const void *p, size_t n) {
    if (grow(b, n) < 0) return -1;
    memcpy(b->p + b->n, p, n);
    b->n += n;
    return 0;
}

/* path + "/" + name, NUL-terminated, into f->full (no second slash after a path ending
 * in one, as os.scandir's DirEntry.path). */
static int full_path(Folder *f, const char *path, size_t np, const char *name, size_t nn) {
    f->full.n = 0;
    if (put(&f->full, path, np) < 0) return -1;
    if ((np == 0 || path[np - 1] != '/') && put(&f->full, "/", 1) < 0) return -1;
    if (put(&f->full, name, nn + 1) < 0) return -1;
    f->full.n--;  /* the NUL is not part of the path */
    return 0;
}

/* The xattrs of f->full (not followed) appended to f->xattrs; a file system without
 * them, or a name gone meanwhile, gives none (as filewalk.xattrs). -1: out of memory. */
static int read_xattrs(Folder *f) {
    char *list = NULL;
    ssize_t n = 0;
    for (int tries = 0; tries < 3; tries++) {
        n = llistxattr(f->full.p, NULL, 0);
        if (n <= 0) return 0;
        char *grown = realloc(list, (size_t)n);
        if (!grown) { free(list); return -1; }
        list = grown;
        n = llistxattr(f->full.p, list, (size_t)n);
        if (n >= 0 || errno != ERANGE) break;
    }
    if (n <= 0) { free(list); return 0; }
    char *value = NULL;
    for (char *name = list; name < list + n; name += strlen(name) + 1) {
        ssize_t v = -1;
        for (int tries = 0; tries < 3; tries++) {
            v = lgetxattr(f->full.p, name, NULL, 0);
            if (v < 0) break;
            char *grown = realloc(value, (size_t)v + 1);
            if (!grown) { free(list); free(value); return -1; }
            value = grown;
            v = lgetxattr(f->full.p, name, value, (size_t)v);
            if (v >= 0 || errno != ERANGE) break;
        }
        if (v < 0) continue;
        unsigned int len = (unsigned int)v;
        if (put(&f->xattrs, name, strlen(name) + 1) < 0 || put(&f->xattrs, &len, 4) < 0 ||
            put(&f->xattrs, value, (size_t)v) < 0) {
            free(list); free(value); return -1;
        }
    }
    free(list);
    free(value);
    return 0;
}

/* The listing, sorted, with each entry's lstat and xattrs; no Python (no GIL held). */
static void read_folder(Folder *f, const char *path, size_t np) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) { f->err = errno; f->failed = "open"; return; }
    DIR *d = fdopendir(fd);
    if (!d) { f->err = errno; f->failed = "fdopendir"; close(fd); return; }
    struct dirent *e;
    errno = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2])))
            continue;
        size_t len = strlen(e->d_name);
        if (f->n == f->cap) {
            size_t cap = f->cap ? f->cap * 2 : 64;
            FEnt *grown = realloc(f->ents, cap * sizeof *grown);
            if (!grown) { f->err = ENOMEM; break; }
            f->ents = grown;
            f->cap = cap;
        }
        FEnt *x = &f->ents[f->n++];
        memset(x, 0, sizeof *x);
        x->name = f->names.n;
        x->len = len;
        if (put(&f->names, e->d_name, len + 1) < 0) { f->err = ENOMEM; break; }
        errno = 0;
    }
    if (!f->err && errno) { f->err = errno; f->failed = "readdir"; }
    if (!f->err && f->n) qsort_r(f->ents, f->n, sizeof *f->ents, by_name, f->names.p);
    for (size_t i = 0; i < f->n && !f->err; i++) {
        FEnt *x = &f->ents[i];
        const char *name = f->names.p + x->name;
        if (fstatat(dirfd(d), name, &x->st, AT_SYMLINK_NOFOLLOW) < 0) {
            if (errno == ENOENT) { x->gone = 1; continue; }
            f->err = errno;
            f->failed = "lstat";
            break;
        }
        if (S_ISLNK(x->st.st_mode)) {
            size_t want = (size_t)x->st.st_size + 1;
            for (;;) {
                if (grow(&f->targets, want) < 0) { f->err = ENOMEM; break; }
                ssize_t r = readlinkat(dirfd(d), name, f->targets.p + f->targets.n, want);
                if (r < 0) {
                    if (errno == ENOENT) x->gone = 1;
                    else { f->err = errno; f->failed = "readlink"; }
                    break;
                }
                if ((size_t)r < want) {
                    x->link = f->targets.n;
                    x->linklen = (size_t)r;
                    f->targets.n += (size_t)r;
                    break;
                }
                want *= 2;  /* the link was made longer meanwhile */
            }
            if (f->err) break;
            if (x->gone) continue;
        }
        x->xa = f->xattrs.n;
        if (full_path(f, path, np, name, x->len) < 0 || read_xattrs(f) < 0) f->err = ENOMEM;
        x->xalen = f->xattrs.n - x->xa;
    }
    closedir(d);
}

static PyObject *time_t_obj(struct timespec t) {
    return PyLong_FromLongLong((long long)t.tv_sec);
}

static PyObject *float_of(struct timespec t) {
    return PyFloat_FromDouble((double)t.tv_sec + (double)t.tv_nsec * 1e-9);
}

/* An os.stat_result as os.lstat makes it (Linux: 10 fields, then 9 by name only). */
PyObject *tw_os_stat(PyTypeObject *type, const struct stat *st) {
    PyObject *s = PyStructSequence_New(type);
    if (!s) return NULL;
    PyObject *v[19] = {
        PyLong_FromLong((long)st->st_mode),
        PyLong_FromUnsignedLongLong((unsigned long long)st->st_ino),
        PyLong_FromUnsignedLongLong((unsigned long long)st->st_dev),
        PyLong_FromLong((long)st->st_nlink),
        PyLong_FromUnsignedLong((unsigned long)st->st_uid),
        PyLong_FromUnsignedLong((unsigned long)st->st_gid),
        PyLong_FromLongLong((long long)st->st_size),
        time_t_obj(st->st_atim), time_t_obj(st->st_mtim), time_t_obj(st->st_ctim),
        float_of(st->st_atim), float_of(st->st_mtim), float_of(st->st_ctim),
        tw_ns_obj(st->st_atim), tw_ns_obj(st->st_mtim), tw_ns_obj(st->st_ctim),
        PyLong_FromLong((long)st->st_blksize),
        PyLong_FromLongLong((long long)st->st_blocks),
        PyLong_FromUnsignedLongLong((unsigned long long)st->st_rdev)};
    return tw_struct_fill(s, v, 19);
}

/* {name: value in hex} of one entry's xattrs in the buffer. */
static PyObject *xattr_dict(const char *p, size_t n) {
    PyObject *d = PyDict_New();
    static const char hex[] = "0123456789abcdef";
    for (size_t at = 0; d && at < n;) {
        size_t nl = strlen(p + at);
        unsigned int len;
        memcpy(&len, p + at + nl + 1, 4);
        const unsigned char *val = (const unsigned char *)p + at + nl + 5;
        PyObject *key = PyUnicode_DecodeFSDefaultAndSize(p + at, (Py_ssize_t)nl);
        PyObject *text = PyUnicode_New((Py_ssize_t)len * 2, 127);
        if (key && text) {
            Py_UCS1 *out = PyUnicode_1BYTE_DATA(text);
            for (unsigned int i = 0; i < len; i++) {
                out[2 * i] = (Py_UCS1)hex[val[i] >> 4];
                out[2 * i + 1] = (Py_UCS1)hex[val[i] & 15];
            }
        }
        if (!key || !text || PyDict_SetItem(d, key, text) < 0) Py_CLEAR(d);
        Py_XDECREF(key);
        Py_XDECREF(text);
        at += nl + 5 + len;
    }
    return d;
}

/* scan_folder(path: bytes, stat_result type) -> [(name, path, lstat, xattrs, symlink
 * target or None)], by name;
 * OSError when the folder cannot be read. */
PyObject *tw_scan_folder(PyObject *self, PyObject *args) {
    (void)self;
    const char *path;
    Py_ssize_t np;
    PyObject *type;
    if (!PyArg_ParseTuple(args, "y#O!", &path, &np, &PyType_Type, &type)) return NULL;
    Folder f;
    memset(&f, 0, sizeof f);
    Py_BEGIN_ALLOW_THREADS
    read_folder(&f, path, (size_t)np);
    Py_END_ALLOW_THREADS
    PyObject *out = NULL;
    if (f.err) {
        errno = f.err;
        PyErr_SetFromErrnoWithFilename(PyExc_OSError, path);
        goto done;
    }
    out = PyList_New(0);
    for (size_t i = 0; out && i < f.n; i++) {
        FEnt *x = &f.ents[i];
        if (x->gone) continue;
        const char *name = f.names.p + x->name;
        PyObject *item = NULL;
        if (full_path(&f, path, (size_t)np, name, x->len) < 0) {
            PyErr_NoMemory();
        } else {
            PyObject *target = S_ISLNK(x->st.st_mode)
                ? PyBytes_FromStringAndSize(f.targets.p + x->link, (Py_ssize_t)x->linklen)
                : Py_NewRef(Py_None);
            item = Py_BuildValue("(y#y#NNN)", name, (Py_ssize_t)x->len, f.full.p,
                                 (Py_ssize_t)f.full.n, tw_os_stat((PyTypeObject *)type, &x->st),
                                 xattr_dict(f.xattrs.p ? f.xattrs.p + x->xa : "", x->xalen),
                                 target);
        }
        if (!item || PyList_Append(out, item) < 0) Py_CLEAR(out);
        Py_XDECREF(item);
    }
done:
    free(f.names.p);
    free(f.xattrs.p);
    free(f.full.p);
    free(f.targets.p);
    free(f.ents);
    return out;
}
