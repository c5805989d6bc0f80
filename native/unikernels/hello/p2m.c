/*
 * The guest's pseudo-physical -> machine map (p2m), and the three-level frame-list tree that
 * publishes it in shared_info->arch. libxc's save (`xl save`, migration) finds every page of a
 * PV guest through pfn_to_mfn_frame_list_list and max_pfn; without them the save fails. The tree:
 * one page (frame-list-list) listing the MFNs of frame-list pages, each listing the MFNs of up to
 * 512 p2m pages, each holding 512 p2m entries.
 */
#include "hello.h"

#define ENTRIES_PER_PAGE (PAGE_SIZE / sizeof(unsigned long))
/* One frame-list page covers 512 * 512 pfns = 1 GiB of guest memory: far more than we run in. */
#define MAX_FRAME_LIST_PAGES 1

static unsigned long *p2m;
static unsigned long p2m_entries;

static unsigned long frame_list_list[ENTRIES_PER_PAGE] __attribute__((aligned(4096), section(".bss.pages")));
static unsigned long frame_list[MAX_FRAME_LIST_PAGES][ENTRIES_PER_PAGE]
    __attribute__((aligned(4096), section(".bss.pages")));

/* The builder's p2m (start_info mfn_list) is ours to keep: libxc rewrites its entries in place on
 * restore, but start_info only carries mfn_list on the first boot, so remember it. */
void p2m_init(start_info_t *si) {
  p2m = (unsigned long *)si->mfn_list;
  p2m_entries = si->nr_pages;
}

/* Pages are mapped linearly from VIRT_BASE 0, so a virtual page number is a pfn. */
unsigned long pfn_to_mfn(unsigned long pfn) { return p2m[pfn]; }

unsigned long virt_to_mfn(const void *va) { return p2m[(unsigned long)va >> PAGE_SHIFT]; }

void *mfn_to_virt(unsigned long mfn) { return (void *)(MACHINE_TO_PHYS[mfn] << PAGE_SHIFT); }

void p2m_publish(void) {
  unsigned long p2m_pages = (p2m_entries + ENTRIES_PER_PAGE - 1) / ENTRIES_PER_PAGE;
  unsigned long fl_pages = (p2m_pages + ENTRIES_PER_PAGE - 1) / ENTRIES_PER_PAGE;
  if (fl_pages > MAX_FRAME_LIST_PAGES) {
    printk("hello: %lu pages of memory is more than save/restore supports here\n", p2m_entries);
    return;
  }
  memset(frame_list, 0, sizeof(frame_list));
  memset(frame_list_list, 0, sizeof(frame_list_list));
  for (unsigned long i = 0; i < p2m_pages; i++)
    frame_list[i / ENTRIES_PER_PAGE][i % ENTRIES_PER_PAGE] = virt_to_mfn(p2m + i * ENTRIES_PER_PAGE);
  for (unsigned long i = 0; i < fl_pages; i++) frame_list_list[i] = virt_to_mfn(frame_list[i]);
  shared->arch.max_pfn = p2m_entries;
  barrier();
  shared->arch.pfn_to_mfn_frame_list_list = virt_to_mfn(frame_list_list);
}
