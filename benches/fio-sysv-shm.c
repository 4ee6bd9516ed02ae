/*
 * LD_PRELOAD library for benches/blk-vs-qsd.sh: System V shared memory
 * (shmget, shmat, shmdt, shmctl) for fio in a guest kernel built without
 * CONFIG_SYSVIPC (shared/tools/guest-kernel.sh's tinyconfig), where the
 * system calls answer ENOSYS and fio stops with "failed to setup shm
 * segment". fio runs there with --thread, so every user of a segment lives
 * in this one process: a segment is an anonymous shared mapping, attached
 * at the same address every time, unmapped when it is removed (IPC_RMID)
 * and no longer attached, as the kernel would. Keys other than IPC_PRIVATE
 * are not shared between calls (fio asks only for IPC_PRIVATE).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>

#define SEGMENTS 256

static struct segment {
    void *addr;
    size_t size;
    int in_use;
    int attached;
    int removed;
} segs[SEGMENTS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static struct segment *get(int id)
{
    if (id < 0 || id >= SEGMENTS || !segs[id].in_use) {
        errno = EINVAL;
        return NULL;
    }
    return &segs[id];
}

static void release_if_done(struct segment *s)
{
    if (s->removed && s->attached == 0) {
        munmap(s->addr, s->size);
        memset(s, 0, sizeof(*s));
    }
}

int shmget(key_t key, size_t size, int flags)
{
    (void)key;
    (void)flags;
    if (size == 0) {
        errno = EINVAL;
        return -1;
    }
    pthread_mutex_lock(&lock);
    for (int i = 0; i < SEGMENTS; i++) {
        if (segs[i].in_use)
            continue;
        void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            pthread_mutex_unlock(&lock);
            errno = ENOMEM;
            return -1;
        }
        segs[i] = (struct segment){ .addr = p, .size = size, .in_use = 1 };
        pthread_mutex_unlock(&lock);
        return i;
    }
    pthread_mutex_unlock(&lock);
    errno = ENOSPC;
    return -1;
}

void *shmat(int id, const void *addr, int flags)
{
    (void)flags;
    pthread_mutex_lock(&lock);
    struct segment *s = get(id);
    if (s == NULL || (addr != NULL && addr != s->addr)) {
        pthread_mutex_unlock(&lock);
        errno = EINVAL;
        return (void *)-1;
    }
    s->attached++;
    void *p = s->addr;
    pthread_mutex_unlock(&lock);
    return p;
}

int shmdt(const void *addr)
{
    pthread_mutex_lock(&lock);
    for (int i = 0; i < SEGMENTS; i++) {
        struct segment *s = &segs[i];
        if (s->in_use && s->addr == addr && s->attached > 0) {
            s->attached--;
            release_if_done(s);
            pthread_mutex_unlock(&lock);
            return 0;
        }
    }
    pthread_mutex_unlock(&lock);
    errno = EINVAL;
    return -1;
}

int shmctl(int id, int cmd, struct shmid_ds *buf)
{
    pthread_mutex_lock(&lock);
    struct segment *s = get(id);
    int ret = 0;
    if (s == NULL) {
        ret = -1;
    } else if (cmd == IPC_RMID) {
        s->removed = 1;
        release_if_done(s);
    } else if (cmd == IPC_STAT && buf != NULL) {
        memset(buf, 0, sizeof(*buf));
        buf->shm_segsz = s->size;
        buf->shm_nattch = (shmatt_t)s->attached;
    } else if (cmd != IPC_SET) {
        errno = EINVAL;
        ret = -1;
    }
    pthread_mutex_unlock(&lock);
    return ret;
}
