/* Prints the sizes and member offsets of the libxl structs that libxl-structs.ts lays out with koffi,
 * as JSON, from the installed headers. layout.test.ts compiles and runs it and compares. */
#include <stddef.h>
#include <stdio.h>
#include <libxl.h>
#include <libxl_event.h>

#define BEGIN(T) printf("%s\"%s\":{\"size\":%zu,\"offsets\":{", first_struct ? "" : ",", #T, sizeof(T)); first_struct = 0; first_member = 1
#define M(T, m) printf("%s\"%s\":%zu", first_member ? "" : ",", #m, offsetof(T, m)); first_member = 0
#define END() printf("}}")

int main(void) {
    int first_struct = 1, first_member = 1;
    printf("{");
    BEGIN(libxl_dominfo);
    M(libxl_dominfo, uuid); M(libxl_dominfo, domid); M(libxl_dominfo, ssidref); M(libxl_dominfo, ssid_label);
    M(libxl_dominfo, running); M(libxl_dominfo, blocked); M(libxl_dominfo, paused); M(libxl_dominfo, shutdown);
    M(libxl_dominfo, dying); M(libxl_dominfo, never_stop); M(libxl_dominfo, shutdown_reason);
    M(libxl_dominfo, outstanding_memkb); M(libxl_dominfo, current_memkb); M(libxl_dominfo, shared_memkb);
    M(libxl_dominfo, paged_memkb); M(libxl_dominfo, max_memkb); M(libxl_dominfo, cpu_time);
    M(libxl_dominfo, vcpu_max_id); M(libxl_dominfo, vcpu_online); M(libxl_dominfo, cpupool);
    M(libxl_dominfo, gpaddr_bits); M(libxl_dominfo, domain_type);
    END();
    BEGIN(libxl_physinfo);
    M(libxl_physinfo, threads_per_core); M(libxl_physinfo, cores_per_socket); M(libxl_physinfo, max_cpu_id);
    M(libxl_physinfo, nr_cpus); M(libxl_physinfo, cpu_khz); M(libxl_physinfo, total_pages);
    M(libxl_physinfo, free_pages); M(libxl_physinfo, scrub_pages); M(libxl_physinfo, outstanding_pages);
    M(libxl_physinfo, sharing_freed_pages); M(libxl_physinfo, sharing_used_frames);
    M(libxl_physinfo, max_possible_mfn); M(libxl_physinfo, nr_nodes); M(libxl_physinfo, hw_cap);
    M(libxl_physinfo, cap_hvm); M(libxl_physinfo, cap_pv); M(libxl_physinfo, cap_hvm_directio);
    M(libxl_physinfo, cap_hap); M(libxl_physinfo, cap_shadow); M(libxl_physinfo, cap_iommu_hap_pt_share);
    M(libxl_physinfo, cap_vmtrace); M(libxl_physinfo, cap_vpmu); M(libxl_physinfo, cap_gnttab_v1);
    M(libxl_physinfo, cap_gnttab_v2);
    END();
    BEGIN(libxl_version_info);
    M(libxl_version_info, xen_version_major); M(libxl_version_info, xen_version_minor);
    M(libxl_version_info, xen_version_extra); M(libxl_version_info, compiler); M(libxl_version_info, compile_by);
    M(libxl_version_info, compile_domain); M(libxl_version_info, compile_date);
    M(libxl_version_info, capabilities); M(libxl_version_info, changeset); M(libxl_version_info, virt_start);
    M(libxl_version_info, pagesize); M(libxl_version_info, commandline); M(libxl_version_info, build_id);
    END();
    BEGIN(libxl_bitmap);
    M(libxl_bitmap, size); M(libxl_bitmap, map);
    END();
    BEGIN(libxl_domain_restore_params);
    M(libxl_domain_restore_params, checkpointed_stream); M(libxl_domain_restore_params, stream_version);
    M(libxl_domain_restore_params, colo_proxy_script); M(libxl_domain_restore_params, userspace_colo_proxy);
    END();
    BEGIN(libxl_childproc_hooks);
    M(libxl_childproc_hooks, chldowner); M(libxl_childproc_hooks, fork_replacement);
    M(libxl_childproc_hooks, reaped_callback);
    END();
    BEGIN(libxl_domain_config);
    END();
    printf(",\"constants\":{\"LIBXL_SUSPEND_LIVE\":%d,\"LIBXL_CONSOLE_TYPE_PV\":%d,"
           "\"libxl_sigchld_owner_mainloop\":%d,\"XTL_WARN\":%d,\"XTL_STDIOSTREAM_HIDE_PROGRESS\":%u,"
           "\"ERROR_DOMAIN_NOTFOUND\":%d,\"ERROR_NOMEM\":%d,\"ERROR_INVAL\":%d}",
           LIBXL_SUSPEND_LIVE, LIBXL_CONSOLE_TYPE_PV, libxl_sigchld_owner_mainloop, XTL_WARN,
           XTL_STDIOSTREAM_HIDE_PROGRESS, ERROR_DOMAIN_NOTFOUND, ERROR_NOMEM, ERROR_INVAL);
    printf("}\n");
    return 0;
}
