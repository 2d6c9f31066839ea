# Stub Vivado for tests/test_vivado_tcl.py: runs a vivado/tcl script in plain tclsh, recording
# what it asks Vivado to build, one line per call, to $OHQ_STUB_LOG.
#   tclsh vivado_stub.tcl <script.tcl> <script arguments...>
#   OHQ_STUB_ARGV="<script.tcl> <arguments...>" yosys -q -c vivado_stub.tcl   (yosys' Tcl 8.6)
# Environment: OHQ_STUB_LOG (log file), OHQ_STUB_WNS / OHQ_STUB_WHS (slack the implementation
# run reports, ns; default 0.250 / 0.020), OHQ_STUB_BOARDS (board parts installed, default all),
# OHQ_STUB_INFERRED (1: ipx finds the interfaces ipx::package_project would have inferred).
# Implementation "writes" <proj>.runs/impl_1/<bd>_wrapper.bit, and generating the block design
# writes <proj>.gen/sources_1/bd/<bd>/hw_handoff/<bd>.hwh, each with a marker line.
if {![info exists argv] || [info exists ::env(OHQ_STUB_ARGV)]} { set argv $::env(OHQ_STUB_ARGV) }
set script [lindex $argv 0]
set argv [lrange $argv 1 end]
set argc [llength $argv]
set ::log [open $::env(OHQ_STUB_LOG) w]
proc record {args} { puts $::log [join $args "\t"]; flush $::log }
proc env_or {name default} { if {[info exists ::env($name)]} { return $::env($name) }; return $default }
set ::stub_proj_dir ""
set ::stub_proj_name ""
set ::stub_bd ""
proc opt {arglist name} { lindex $arglist [expr {[lsearch $arglist $name] + 1}] }

proc create_project {args} {
    set pos [lsearch -not -all -inline -regexp $args {^-}]
    set ::stub_proj_name [lindex $pos 0]
    set ::stub_proj_dir [lindex $pos 1]
    file mkdir $::stub_proj_dir
    record project $::stub_proj_name $::stub_proj_dir [opt $args -part]
}
proc current_project {args} { return project }
proc current_fileset {args} { return sources_1 }
proc set_param {name value} { record param $name $value }
proc get_board_parts {args} {
    set pattern [lindex $args end]
    set have [env_or OHQ_STUB_BOARDS *]
    if {$have eq "*"} { return [list $pattern] }
    set out {}
    foreach b $have { if {[string match $pattern $b]} { lappend out $b } }
    return $out
}
proc set_property {args} {
    if {[lindex $args 0] eq "-dict"} {
        foreach {k v} [lindex $args 1] { record prop [lindex $args 2] $k $v }
    } else {
        record prop [lindex $args 2] [lindex $args 0] [lindex $args 1]
    }
}
proc create_bd_design {name} { set ::stub_bd $name; record bd $name }
proc create_bd_cell {args} {
    set name [lindex $args end]
    record cell $name [opt $args -vlnv]
    return $name
}
proc apply_bd_automation {args} { record automation [opt $args -rule] [lindex $args end] }
foreach getter {get_bd_pins get_bd_intf_pins get_bd_addr_segs get_bd_addr_spaces get_bd_cells} {
    proc $getter {args} { return [lindex $args end] }
}
proc connect_bd_intf_net {a b} { record intf $a $b }
proc connect_bd_net {a b} { record net $a $b }
proc assign_bd_address {args} {
    if {$args eq ""} { record addr_auto; return }
    record addr [lindex $args end] [opt $args -offset] [opt $args -range] [opt $args -target_address_space]
}
foreach noop {update_ip_catalog validate_bd_design save_bd_design update_compile_order close_project
              make_wrapper add_files wait_on_run} {
    proc $noop {args} [list record $noop]
}
proc get_files {args} {
    set name [lindex $args end]
    if {[string match *.bd $name]} { return $::stub_proj_dir/$::stub_proj_name.srcs/sources_1/bd/$::stub_bd/$name }
    return ""
}
proc generate_target {args} {
    set dir $::stub_proj_dir/$::stub_proj_name.gen/sources_1/bd/$::stub_bd/hw_handoff
    file mkdir $dir
    set f [open $dir/$::stub_bd.hwh w]; puts $f "hwh from the hand-off path"; close $f
    record generate_target [lindex $args end]
}
proc launch_runs {args} {
    set dir $::stub_proj_dir/$::stub_proj_name.runs/impl_1
    file mkdir $dir
    set f [open $dir/${::stub_bd}_wrapper.bit w]; puts $f "bit from impl_1"; close $f
    record launch_runs {*}$args
}
proc get_runs {name} { return $name }
proc get_property {name obj} {
    switch -- $name {
        PROGRESS { return 100% }
        DIRECTORY { return $::stub_proj_dir/$::stub_proj_name.runs/impl_1 }
        STATS.WNS { return [env_or OHQ_STUB_WNS 0.250] }
        STATS.WHS { return [env_or OHQ_STUB_WHS 0.020] }
    }
    return ""
}

# ipx (package_ip.tcl): objects are names; with OHQ_STUB_INFERRED=1 the getters find them.
namespace eval ipx {
    proc found {kind name} {
        if {[::env_or OHQ_STUB_INFERRED 0]} { return "$kind:$name" }
        return ""
    }
    proc package_project {args} { ::record ipx package_project {*}$args }
    proc current_core {} { return core }
    proc get_bus_interfaces {name args} { found busif $name }
    proc add_bus_interface {name core} { ::record ipx add_bus_interface $name; return "busif:$name" }
    proc get_port_maps {name args} { return "portmap:$name" }
    proc add_port_map {name busif} { ::record ipx add_port_map $name $busif }
    proc get_bus_parameters {name args} { found busparam $name }
    proc add_bus_parameter {name busif} { ::record ipx add_bus_parameter $name $busif; return "busparam:$name" }
    proc associate_bus_interfaces {args} { ::record ipx associate_bus_interfaces {*}$args }
    proc get_memory_maps {name args} { found memmap $name }
    proc add_memory_map {name core} { ::record ipx add_memory_map $name; return "memmap:$name" }
    proc get_address_blocks {name args} { found block $name }
    proc add_address_block {name mm} { ::record ipx add_address_block $name $mm; return "block:$name" }
    foreach noop {create_xgui_files update_checksums check_integrity save_core} {
        proc $noop {args} [list ::record ipx $noop]
    }
}

source $script
record done
