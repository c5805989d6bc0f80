/*
 * Entry points, Xen ELF notes, the hypercall page and the event/failsafe callbacks of `hello`,
 * a 64-bit PV or PVH guest. Written from the Xen public ABI (xen/elfnote.h, arch-x86/xen-x86_64.h,
 * arch-x86/hvm/start_info.h).
 *
 * PV entry state (x86_64): %rsi = virtual address of start_info, %rsp = a bootstrap stack the
 * domain builder made, events masked, running on the builder's page tables that map the image,
 * the p2m list, start_info, the xenstore and console pages linearly from VIRT_BASE.
 *
 * PVH entry state (XEN_ELFNOTE_PHYS32_ENTRY): 32-bit protected mode, paging off, flat segments,
 * %ebx = physical address of hvm_start_info, no stack. The image is loaded at its physical link
 * address (0), so identity-mapping the low 4 GiB gives the C code the same addresses as under PV
 * (and reaches the console and XenStore pages, which libxl puts just below 4 GiB).
 */
#include <xen/elfnote.h>

#define HYPERCALL_iret 23

/* One ELF note: name "Xen", a type from xen/elfnote.h, a descriptor given as assembler data. */
#define XEN_NOTE(type, desctype, descdata) \
	.pushsection .note.Xen, "a", @note; \
	.p2align 2;                         \
	.long 2f - 1f;                      \
	.long 4f - 3f;                      \
	.long type;                         \
1:	.asciz "Xen";                       \
2:	.p2align 2;                         \
3:	desctype descdata;                  \
4:	.p2align 2;                         \
	.popsection

XEN_NOTE(XEN_ELFNOTE_GUEST_OS,       .asciz, "superfluid-hello")
XEN_NOTE(XEN_ELFNOTE_GUEST_VERSION,  .asciz, "0.1")
XEN_NOTE(XEN_ELFNOTE_XEN_VERSION,    .asciz, "xen-3.0")
XEN_NOTE(XEN_ELFNOTE_VIRT_BASE,      .quad,  0)
XEN_NOTE(XEN_ELFNOTE_PADDR_OFFSET,   .quad,  0)
XEN_NOTE(XEN_ELFNOTE_ENTRY,          .quad,  _start)
XEN_NOTE(XEN_ELFNOTE_HYPERCALL_PAGE, .quad,  hypercall_page)
XEN_NOTE(XEN_ELFNOTE_LOADER,         .asciz, "generic")
XEN_NOTE(XEN_ELFNOTE_FEATURES,       .asciz, "!writable_page_tables")
/* We handle SCHEDOP_shutdown(suspend) returning 1 (suspend cancelled, same domain). */
XEN_NOTE(XEN_ELFNOTE_SUSPEND_CANCEL, .long,  1)
/* The PVH entry: its presence is what lets the toolstack boot this image as type "pvh". */
XEN_NOTE(XEN_ELFNOTE_PHYS32_ENTRY,   .long,  pvh_start32)

	.section .text.entry, "ax"
	.globl _start
_start:
	/* The TSC at the first instruction: the origin of the boot time the ready line reports. */
	rdtsc
	shlq $32, %rdx
	orq %rdx, %rax
	movq %rax, boot_tsc(%rip)
	leaq stack_top(%rip), %rsp
	movq %rsi, %rdi            /* main(start_info) */
	xorl %ebp, %ebp
	call hello_main
	/* hello_main never returns; if it did, spin rather than run off into the weeds. */
1:	hlt
	jmp 1b

	/* PVH: build identity page tables (2 MiB pages over 4 GiB), enter long mode, call C. */
	.code32
	.globl pvh_start32
pvh_start32:
	rdtsc
	movl %eax, boot_tsc
	movl %edx, boot_tsc + 4
	movl %ebx, pvh_start_info
	movl $(pvh_pdpt + 3), pvh_pml4
	xorl %ecx, %ecx
1:	movl %ecx, %eax
	shll $12, %eax
	addl $(pvh_pd + 3), %eax
	movl %eax, pvh_pdpt(, %ecx, 8)
	incl %ecx
	cmpl $4, %ecx
	jb 1b
	xorl %ecx, %ecx
2:	movl %ecx, %eax
	shll $21, %eax
	orl $0x83, %eax            /* present, writable, 2 MiB page */
	movl %eax, pvh_pd(, %ecx, 8)
	incl %ecx
	cmpl $2048, %ecx
	jb 2b
	movl %cr4, %eax
	orl $0x20, %eax            /* PAE */
	movl %eax, %cr4
	movl $pvh_pml4, %eax
	movl %eax, %cr3
	movl $0xc0000080, %ecx     /* EFER.LME */
	rdmsr
	orl $0x100, %eax
	wrmsr
	movl %cr0, %eax
	orl $0x80000001, %eax      /* PG | PE */
	movl %eax, %cr0
	lgdt pvh_gdt_desc
	ljmp $0x08, $pvh_start64

	.code64
pvh_start64:
	movl $0x10, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	movl %eax, %fs
	movl %eax, %gs
	leaq stack_top(%rip), %rsp
	movl pvh_start_info(%rip), %edi /* hello_main_pvh(start_info physical address) */
	xorl %ebp, %ebp
	call hello_main_pvh
3:	hlt
	jmp 3b

	/*
	 * Event upcall. Xen enters with [rcx, r11] pushed on top of an iret frame
	 * [rip, cs, rflags, rsp, ss]. The guest does its event work by polling after
	 * SCHEDOP_poll/SCHEDOP_block return, so the upcall only has to return with events
	 * masked again: clear IF in the saved rflags (HYPERVISOR_iret turns that into
	 * evtchn_upcall_mask = 1), push the iret flags word (0: not in a syscall) and let the
	 * hypercall page's iret stub push rax/r11/rcx and enter Xen.
	 */
	.globl event_callback
event_callback:
	popq %rcx
	popq %r11
	andq $~0x200, 16(%rsp)
	pushq $0
	jmp hypercall_page + HYPERCALL_iret * 32

	/* Failsafe callback: Xen could not return to us (bad segment state). Nothing to fix: crash. */
	.globl failsafe_callback
failsafe_callback:
	leaq stack_top(%rip), %rsp
	call hello_crash
2:	hlt
	jmp 2b

	/* Xen writes one 32-byte stub per hypercall here when it builds the domain. */
	.section .text.hypercall, "ax"
	.p2align 12
	.globl hypercall_page
hypercall_page:
	.fill 4096, 1, 0xcc

	.section .rodata
	.p2align 3
pvh_gdt:
	.quad 0
	.quad 0x00af9a000000ffff   /* 0x08: 64-bit code */
	.quad 0x00cf92000000ffff   /* 0x10: data */
pvh_gdt_desc:
	.word pvh_gdt_desc - pvh_gdt - 1
	.long pvh_gdt

	.section .bss.pages, "aw", @nobits
	.p2align 12
pvh_pml4:
	.skip 4096
pvh_pdpt:
	.skip 4096
pvh_pd:
	.skip 4 * 4096

	.section .bss.stack, "aw", @nobits
	.p2align 12
stack_bottom:
	.skip 16384
	.globl stack_top
stack_top:

	.section .bss
	.p2align 3
	.globl boot_tsc
boot_tsc:
	.quad 0
pvh_start_info:
	.quad 0
	.section .note.GNU-stack, "", @progbits
