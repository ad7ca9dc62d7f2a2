/*
 * DeltaMigrate test guest: fills a working set, then dirties pages of a hot
 * subset at a steady, paced rate and prints heartbeats on COM1.
 * Freestanding, 32-bit, no paging. Parameters come from the multiboot cmdline.
 */
#include <stdint.h>
#include <stddef.h>

#define WS_BASE   0x01000000u        /* working set starts at 16 MiB */
#define PAGE      4096u
#define COM1      0x3F8
#define PIT_HZ    1193182u

struct mb_info {                     /* multiboot v1 info, only the fields we use */
    uint32_t flags, mem_lower, mem_upper, boot_device, cmdline;
};

enum { PAT_SCATTER, PAT_RUN, PAT_RANDOM };
enum { FILL_RANDOM, FILL_TEXT };
static const char *const pat_names[] = { "scatter", "run", "random" };
static const char *const fill_names[] = { "random", "text" };

/* ---- port I/O, serial, printing ---------------------------------------- */
static inline void outb(uint16_t p, uint8_t v) { __asm__ volatile("outb %0,%1" :: "a"(v), "Nd"(p)); }
static inline uint8_t inb(uint16_t p) { uint8_t v; __asm__ volatile("inb %1,%0" : "=a"(v) : "Nd"(p)); return v; }
static inline uint64_t rdtsc(void) { uint64_t v; __asm__ volatile("rdtsc" : "=A"(v)); return v; }

static void serial_init(void)
{
    outb(COM1 + 1, 0x00);            /* no interrupts */
    outb(COM1 + 3, 0x80);            /* DLAB on */
    outb(COM1 + 0, 0x01);            /* divisor 1 = 115200 baud */
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03);            /* 8N1, DLAB off */
    outb(COM1 + 2, 0xC7);            /* FIFO on, cleared */
    outb(COM1 + 4, 0x03);            /* DTR | RTS */
}

static void putc_(char c)
{
    while (!(inb(COM1 + 5) & 0x20)) { }
    outb(COM1, (uint8_t)c);
}

static void puts_(const char *s) { while (*s) { if (*s == '\n') putc_('\r'); putc_(*s++); } }

/* 64/32 division without libgcc (no 32-bit libgcc on a non-multilib host):
   two divl steps; the high remainder is < d so the second divl cannot overflow. */
static uint32_t divmod(uint64_t *n, uint32_t d)
{
    uint32_t hi = (uint32_t)(*n >> 32), lo = (uint32_t)*n, r = hi % d, q_lo;
    hi /= d;
    __asm__("divl %4" : "=a"(q_lo), "=d"(r) : "a"(lo), "d"(r), "rm"(d));
    *n = ((uint64_t)hi << 32) | q_lo;
    return r;
}

static void putu(uint64_t n)
{
    char buf[24]; int i = 0;
    do { buf[i++] = (char)('0' + divmod(&n, 10)); } while (n);
    while (i) putc_(buf[--i]);
}

static void kv(const char *k, uint64_t v) { puts_(k); putu(v); }

static void halt(void) { for (;;) __asm__ volatile("cli; hlt"); }

static void fail(const char *msg) { puts_("DMGUEST error "); puts_(msg); puts_("\n"); halt(); }

void guest_fault(void) { fail("cpu exception"); }   /* called from boot.S */

/* ---- PRNG --------------------------------------------------------------- */
static uint32_t rng = 2463534242u;
static inline uint32_t rnd(void) { rng ^= rng << 13; rng ^= rng >> 17; rng ^= rng << 5; return rng; }

/* ---- IDT / PIC / PIT: a 1 kHz IRQ0 lets the idle loop hlt instead of spin ---- */
extern void irq0_stub(void), exc_stub(void);
static uint64_t idt[0x21];

static void set_gate(int v, void (*h)(void))
{
    uint32_t a = (uint32_t)h;
    idt[v] = (a & 0xFFFF) | (0x08u << 16) | ((uint64_t)(0x8E00 | (a & 0xFFFF0000u)) << 32);
}

static void irq_init(void)
{
    struct __attribute__((packed)) { uint16_t lim; uint32_t base; } d = { sizeof idt - 1, (uint32_t)idt };
    for (int v = 0; v < 0x20; v++) set_gate(v, exc_stub);
    set_gate(0x20, irq0_stub);
    __asm__ volatile("lidt %0" :: "m"(d));
    outb(0x20, 0x11); outb(0xA0, 0x11);          /* remap PICs to 0x20/0x28 */
    outb(0x21, 0x20); outb(0xA1, 0x28);
    outb(0x21, 0x04); outb(0xA1, 0x02);
    outb(0x21, 0x01); outb(0xA1, 0x01);
    outb(0x21, 0xFE); outb(0xA1, 0xFF);          /* only IRQ0 */
    outb(0x43, 0x34);                            /* ch0, lo/hi, mode 2 */
    outb(0x40, (PIT_HZ / 1000) & 0xFF); outb(0x40, (PIT_HZ / 1000) >> 8);
    __asm__ volatile("sti");
}

/* TSC ticks per ms, measured against PIT channel 2 one-shots (10 ms, polled via
   port 0x61). If the host deschedules the vCPU we notice the end late, which only
   ever inflates a sample, so take the minimum of several. */
static uint32_t calibrate_tsc(void)
{
    const uint32_t count = PIT_HZ / 100;         /* 10 ms */
    uint32_t best = 0xFFFFFFFFu;
    outb(0x61, (inb(0x61) & ~0x02) | 0x01);      /* gate ch2 on, speaker off */
    for (int i = 0; i < 7; i++) {
        outb(0x43, 0xB0);                        /* ch2, lo/hi, mode 0 */
        outb(0x42, count & 0xFF);
        uint64_t t0 = rdtsc();
        outb(0x42, count >> 8);                  /* counting starts now */
        while (!(inb(0x61) & 0x20)) { }          /* OUT2 goes high at terminal count */
        uint32_t d = (uint32_t)(rdtsc() - t0);
        if (d < best) best = d;
    }
    return best / 10 ? best / 10 : 1;
}

/*
 * Toggle CR4.PGE off and on. QEMU flushes its softmmu TLB on any PGE change
 * (even with paging disabled), which works around QEMU 7.2 TCG losing dirty
 * pages during migration when guest writes hit stale TLB entries.
 */
static inline void tlb_flush(void)
{
    uint32_t cr4;
    __asm__ volatile("mov %%cr4,%0" : "=r"(cr4));
    __asm__ volatile("mov %0,%%cr4" :: "r"(cr4 & ~0x80u) : "memory");
    __asm__ volatile("mov %0,%%cr4" :: "r"(cr4 | 0x80u) : "memory");
}

/* ---- command line ------------------------------------------------------- */
static uint32_t ws = 32, hot = 0, rate = 1000, nbytes = 16, seed = 1, pattern = PAT_SCATTER, fill = FILL_RANDOM;

static int streq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) if (a[i] != b[i]) return 0;
    return b[n] == 0;
}

static uint32_t parse_u32(const char *s, size_t n)
{
    uint32_t v = 0;
    if (!n) fail("empty number");
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9' || v > 400000000u) fail("bad number in cmdline");
        v = v * 10 + (uint32_t)(s[i] - '0');
    }
    return v;
}

static uint32_t parse_name(const char *s, size_t n, const char *const *names, int count)
{
    for (int i = 0; i < count; i++) if (streq(s, names[i], n)) return (uint32_t)i;
    fail("bad pattern/fill value");
    return 0;
}

/* Tokens are separated by spaces; tokens without '=' (QEMU puts the kernel path first) are ignored. */
static void parse_cmdline(const char *p)
{
    while (*p) {
        while (*p == ' ') p++;
        const char *k = p, *eq = NULL;
        while (*p && *p != ' ') { if (*p == '=' && !eq) eq = p; p++; }
        if (!eq) continue;
        size_t kn = (size_t)(eq - k), vn = (size_t)(p - eq - 1);
        const char *v = eq + 1;
        if (streq(k, "ws", kn)) ws = parse_u32(v, vn);
        else if (streq(k, "hot", kn)) hot = parse_u32(v, vn);
        else if (streq(k, "rate", kn)) rate = parse_u32(v, vn);
        else if (streq(k, "bytes", kn)) nbytes = parse_u32(v, vn);
        else if (streq(k, "seed", kn)) seed = parse_u32(v, vn);
        else if (streq(k, "pattern", kn)) pattern = parse_name(v, vn, pat_names, 3);
        else if (streq(k, "fill", kn)) fill = parse_name(v, vn, fill_names, 2);
        else fail("unknown cmdline key");
    }
}

/* ---- fill ---------------------------------------------------------------- */
/* Text fill: 1/8 random numbers, 1/2 stock phrases, 3/8 single words, separated by
   spaces/newlines. Tuned so LZ4 (per 4 KiB page) compresses it about 3x. */
static const char *const words[] = {
    "the", "migration", "page", "memory", "guest", "host", "dirty", "bitmap",
    "of", "and", "to", "in", "is", "that", "for", "with", "as", "on", "copy",
    "delta", "block", "transfer", "network", "state", "device", "vcpu", "round",
    "converge", "compress", "buffer", "queue", "stream", "socket", "kernel",
    "a", "be", "this", "from", "by", "at", "not", "are", "or", "it", "was",
    "data", "time", "value", "table", "index", "record", "system", "user",
    "file", "server", "client", "request", "response", "error", "status",
    "config", "update", "version", "checksum",
};
static const char *const phrases[] = {
    "the guest dirtied a page", "memory transfer round", "network socket buffer",
    "converge the migration", "update the dirty bitmap", "checksum error in block",
    "send the page to the host", "compress the stream", "device state record",
    "the kernel queue is full", "client request and server response",
    "version of the config file",
};
#define N(a) (sizeof a / sizeof a[0])

static void fill_text(uint8_t *p, uint8_t *end)
{
    while (p < end) {
        uint32_t r = rnd(), k = r & 15;
        const char *s = k >= 10 ? words[(r >> 4) % N(words)] : phrases[(r >> 4) % N(phrases)];
        if (k < 2) {                              /* a random number, 1-6 digits */
            for (uint32_t d = 1 + (r >> 4) % 6; d-- && p < end; ) *p++ = (uint8_t)('0' + rnd() % 10);
        } else {
            while (*s && p < end) *p++ = (uint8_t)*s++;
        }
        if (p < end) *p++ = ((r >> 16) % 10 == 0) ? '\n' : ' ';
    }
}

/* Filled in 1 MiB (256-page) chunks with a TLB flush after each, so a migration
   started during the fill gets the same dirty-tracking workaround as the loop. */
static void fill_ws(uint32_t mib)
{
    for (uint32_t m = 0; m < mib; m++) {
        uint32_t *w = (uint32_t *)(WS_BASE + m * 0x100000u);
        if (fill == FILL_TEXT) fill_text((uint8_t *)w, (uint8_t *)w + 0x100000u);
        else for (uint32_t i = 0; i < 0x100000u / 4; i++) w[i] = rnd();
        tlb_flush();
    }
}

/* ---- dirtying ----------------------------------------------------------- */
static void dirty_page(uint32_t hot_pages)
{
    uint8_t *pg = (uint8_t *)WS_BASE + (rnd() % hot_pages) * PAGE;
    uint32_t *w = (uint32_t *)pg;
    if (pattern == PAT_RANDOM) {
        for (uint32_t i = 0; i < PAGE / 4; i++) w[i] = rnd();
    } else if (pattern == PAT_RUN) {
        uint32_t off = rnd() % (PAGE - nbytes + 1);
        for (uint32_t i = 0; i < nbytes; i++) pg[off + i] ^= (uint8_t)(1 + rnd() % 255);  /* always changes */
    } else {                                      /* scatter: ceil(bytes/4) words, one per stride slot */
        uint32_t n = (nbytes + 3) / 4, stride = (PAGE / 4) / n;
        for (uint32_t i = 0; i < n; i++) w[i * stride + rnd() % stride] ^= rnd() | 0x01010101u;  /* every byte changes */
    }
}

/* ---- main --------------------------------------------------------------- */
void kmain(uint32_t magic, const struct mb_info *mbi)
{
    serial_init();
    if (magic != 0x2BADB002) fail("not booted by a multiboot loader");
    if (mbi->flags & 4) parse_cmdline((const char *)mbi->cmdline);
    if (!hot || hot > ws) hot = ws;
    if (nbytes < 1) nbytes = 1;
    if (nbytes > PAGE) nbytes = PAGE;
    rng = seed * 2654435761u + 0x9E3779B9u;
    if (!rng) rng = 1;

    puts_("DMGUEST start"); kv(" ws=", ws); kv(" hot=", hot); kv(" rate=", rate); kv(" bytes=", nbytes);
    puts_(" pattern="); puts_(pat_names[pattern]); puts_(" fill="); puts_(fill_names[fill]); kv(" seed=", seed);
    puts_("\n");

    if (!(mbi->flags & 1)) fail("no memory info from multiboot");
    uint64_t ram_top = 0x100000ull + (uint64_t)mbi->mem_upper * 1024;
    if (ws == 0) fail("ws must be at least 1");
    if ((uint64_t)WS_BASE + (uint64_t)ws * 0x100000 > ram_top)
        fail("ws does not fit in RAM (need 16 MiB + ws <= mem_upper top)");

    irq_init();
    uint32_t tpm = calibrate_tsc();
    uint64_t t0 = rdtsc();
    fill_ws(ws);
    uint64_t fill_ms = rdtsc() - t0;
    divmod(&fill_ms, tpm);
    kv("DMGUEST ready fill_ms=", fill_ms); kv(" tsc_khz=", tpm); puts_("\n");

    /* Pacing: a 1 ms clock from the TSC; each ms credits rate/1000 pages (exact via
       a remainder), so pages are spread evenly instead of bursting per heartbeat. */
    uint32_t hot_pages = hot * 256, acc = 0, hb = 0, since_flush = 0;
    uint32_t backlog_cap = rate / 10 > 256 ? rate / 10 : 256;   /* never catch up more than ~100 ms */
    uint64_t due = 0, dirtied = 0, hb_dirtied = 0, ms = 0, next_hb = 100;
    uint64_t next_ms = rdtsc() + tpm;
    for (;;) {
        uint64_t now = rdtsc();
        if (now >= next_ms) {
            while (now >= next_ms) {
                next_ms += tpm; ms++;
                acc += rate; due += acc / 1000; acc %= 1000;
            }
            if (due - dirtied > backlog_cap) due = dirtied + backlog_cap;
            tlb_flush(); since_flush = 0;
            if (ms >= next_hb) {
                /* rate= is pages/s over the last interval (interval is 100 ms of guest time) */
                uint32_t span = (uint32_t)(ms - next_hb + 100);
                kv("DMGUEST hb ", ++hb); kv(" dirtied=", dirtied);
                kv(" rate=", (uint32_t)(dirtied - hb_dirtied) * 1000u / span); puts_("\n");
                hb_dirtied = dirtied; next_hb = ms + 100;
            }
        }
        if (dirtied < due) {
            dirty_page(hot_pages);
            dirtied++;
            if (++since_flush >= 256) { tlb_flush(); since_flush = 0; }
        } else {
            __asm__ volatile("hlt");             /* woken by the 1 kHz PIT IRQ */
        }
    }
}
