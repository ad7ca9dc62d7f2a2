/*
 * delayline: a fixed-delay link for the benchmark (this kernel has no sch_netem).
 *
 * Attaches to an existing TUN device (ip tuntap add dev NAME mode tun) and sends every IPv4
 * packet the kernel routes into it back after DELAY_MS, with source and destination addresses
 * swapped. With 10.9.0.1/24 on the device, a connection from 10.9.0.1 to 10.9.0.2 comes back
 * as one from 10.9.0.2 to a listener on 10.9.0.1, and every reply takes the same path: each
 * direction is delayed once, so the round trip is 2 x DELAY_MS. Unlike a TCP proxy this keeps
 * one end-to-end TCP connection, so slow start and window growth see the real RTT. Swapping
 * the two addresses leaves the IP and TCP checksums valid (a ones' complement sum does not
 * depend on the order of its words). Rate shaping is a tbf qdisc on the same device.
 *
 * Usage: delayline NAME DELAY_MS      (runs until killed; prints one line when attached)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define SLOTS 32768             /* 1 Gbit/s x 10 ms is ~830 full-size packets; the rest is headroom */
#define SLOT_BYTES 2048         /* the device MTU is 1500 and TUN without vnet headers never sends more */

struct slot { uint64_t due; uint32_t len; uint8_t data[SLOT_BYTES]; };
static struct slot ring[SLOTS];

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc != 3) { fprintf(stderr, "usage: delayline NAME DELAY_MS\n"); return 2; }
    uint64_t delay = (uint64_t)strtoul(argv[2], NULL, 10) * 1000000u;

    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK);
    if (fd < 0) { perror("delayline: /dev/net/tun"); return 1; }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
    strncpy(ifr.ifr_name, argv[1], IFNAMSIZ - 1);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) { perror("delayline: TUNSETIFF"); return 1; }
    printf("delayline %s %s ms\n", ifr.ifr_name, argv[2]);
    fflush(stdout);

    unsigned head = 0, count = 0;
    uint64_t dropped = 0;
    for (;;) {
        uint64_t now = now_ns();
        while (count && ring[head].due <= now) {
            /* A write that fails (backlog full) is a lost packet, as on a real link: TCP resends it. */
            if (write(fd, ring[head].data, ring[head].len) < 0 && errno != EAGAIN) { perror("delayline: write"); return 1; }
            head = (head + 1) % SLOTS;
            count--;
        }

        struct pollfd p = { .fd = fd, .events = POLLIN };
        struct timespec wait, *timeout = NULL;
        if (count) {
            uint64_t left = ring[head].due - now;
            wait.tv_sec = (time_t)(left / 1000000000u);
            wait.tv_nsec = (long)(left % 1000000000u);
            timeout = &wait;
        }
        if (ppoll(&p, 1, timeout, NULL) < 0 && errno != EINTR) { perror("delayline: ppoll"); return 1; }
        if (!(p.revents & POLLIN)) continue;

        for (;;) {
            struct slot *s = &ring[(head + count) % SLOTS];
            ssize_t n = read(fd, s->data, SLOT_BYTES);
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR) break;
                perror("delayline: read");
                return 1;
            }
            if (n < 20 || (s->data[0] >> 4) != 4) continue;       /* IPv4 only (IPv6 router chatter is dropped) */
            if (count == SLOTS) { dropped++; continue; }          /* a full queue drops, like a real one */
            uint8_t a[4];
            memcpy(a, s->data + 12, 4);
            memcpy(s->data + 12, s->data + 16, 4);
            memcpy(s->data + 16, a, 4);
            s->len = (uint32_t)n;
            s->due = now_ns() + delay;
            count++;
        }
    }
}
