/* Multiboot v1 entry for the DeltaMigrate test guest (32-bit protected mode). */
#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00000003          /* bit0: page-align modules, bit1: give us mem_* */

        .section .multiboot, "a"
        .align 4
        .long MB_MAGIC
        .long MB_FLAGS
        .long -(MB_MAGIC + MB_FLAGS)

        .section .text
        .globl _start
_start:
        cli
        /* The loader's GDT may live anywhere (spec: do not rely on it), load our own. */
        lgdt gdt_desc
        ljmp $0x08, $1f
1:      mov $0x10, %cx
        mov %cx, %ds
        mov %cx, %es
        mov %cx, %fs
        mov %cx, %gs
        mov %cx, %ss
        mov $stack_top, %esp
        push %ebx                    /* multiboot info pointer */
        push %eax                    /* multiboot magic */
        call kmain
2:      cli
        hlt
        jmp 2b

/* IRQ0 (PIT, vector 0x20): only exists to wake the CPU from hlt. */
        .globl irq0_stub
irq0_stub:
        push %eax
        mov $0x20, %al
        outb %al, $0x20              /* EOI to master PIC */
        pop %eax
        iret

/* Any CPU exception: report and halt (a fault here means a broken test guest). */
        .globl exc_stub
exc_stub:
        cli
        call guest_fault
        jmp 2b

        .section .rodata
        .align 8
gdt:    .quad 0
        .quad 0x00CF9A000000FFFF     /* 0x08: code, flat 4 GiB */
        .quad 0x00CF92000000FFFF     /* 0x10: data, flat 4 GiB */
gdt_desc:
        .word gdt_desc - gdt - 1
        .long gdt

        .section .bss
        .align 16
        .skip 16384
stack_top:
