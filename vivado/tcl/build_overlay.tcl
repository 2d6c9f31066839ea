# Block design + bitstream for one board (run by `make BOARD=<board> overlay`):
#   PS + per core (int4, int8): AXI DMA (simple mode) -> ohq_conv -> same DMA; AXI4-Lite of the
#   cores and DMAs on the PS general-purpose master at fixed addresses; DMA data masters on one HP
#   port; interrupts concatenated to the PS. Writes build/overlay_<board>/ohq.bit and ohq.hwh, and
#   fails (no files written) when the board files are missing or timing is not met.
# Arguments: <board> <boards.json>; $OHQ_BUILD: build folder (default vivado/build). Board facts
# come from ohq_pynq/hw/boards.json (via vivado/tools/board_tcl.py, which turns one entry into Tcl
# variables). ohq_pynq/hw/hwh.py holds the same design as data (tests/test_vivado_tcl.py runs this
# script under tclsh with stub Vivado commands and checks that the two agree).
set board [lindex $argv 0]
set boards_json [lindex $argv 1]
set here [file dirname [file normalize [info script]]]
set root [file dirname $here]
set build [expr {[info exists ::env(OHQ_BUILD)] ? $::env(OHQ_BUILD) : "$root/build"}]
set out $build/overlay_$board
file mkdir $out
exec python3 $root/tools/board_tcl.py $boards_json $board > $out/board.tcl
source $out/board.tcl   ;# part board_part ps fclk_mhz bus_bytes core_params(4|8)

# Board files that do not ship with Vivado (PYNQ-Z2, Ultra96-V2, KV260): see vivado/README.md
# "Board files". OHQ_BOARD_REPO may name a folder of board files to use in place of an install.
if {[info exists ::env(OHQ_BOARD_REPO)]} {
    set_param board.repoPaths [list $::env(OHQ_BOARD_REPO)]
}
if {$board_part ne "" && [llength [get_board_parts -quiet $board_part]] == 0} {
    set family [join [lrange [split $board_part :] 0 2] :]
    set have [get_board_parts -quiet ${family}:*]
    error "board files for $board_part are not installed in this Vivado (found: [expr {$have eq {} ? {none} : $have}]); install them as vivado/README.md (Board files) says, or set OHQ_BOARD_REPO"
}

set proj ohq_$board
set bd_name ohq
create_project -force $proj $out/proj -part $part
if {$board_part ne ""} { set_property board_part $board_part [current_project] }
set_property ip_repo_paths [list $build/ip] [current_project]
update_ip_catalog
create_bd_design $bd_name

if {$ps eq "zynq"} {
    set ps_cell [create_bd_cell -type ip -vlnv xilinx.com:ip:processing_system7 ps]
    apply_bd_automation -rule xilinx.com:bd_rule:processing_system7 \
        -config {make_external "FIXED_IO, DDR" apply_board_preset "1"} $ps_cell
    set_property -dict [list CONFIG.PCW_USE_S_AXI_HP0 1 CONFIG.PCW_S_AXI_HP0_DATA_WIDTH 64 \
        CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ $fclk_mhz CONFIG.PCW_USE_FABRIC_INTERRUPT 1 \
        CONFIG.PCW_IRQ_F2P_INTR 1] $ps_cell
    set gp_master /ps/M_AXI_GP0
    set hp_slave /ps/S_AXI_HP0
    set irq_pin ps/IRQ_F2P
    set lite_base 0x40000000     ;# M_AXI_GP0 window
    set dma_addr_width 32
} else {
    set ps_cell [create_bd_cell -type ip -vlnv xilinx.com:ip:zynq_ultra_ps_e ps]
    apply_bd_automation -rule xilinx.com:bd_rule:zynq_ultra_ps_e -config {apply_board_preset "1"} $ps_cell
    # Only HPM0_FPD (GP0) as master: a board preset may enable HPM1_FPD (GP1) or HPM0_LPD (GP2),
    # whose unconnected clocks fail validate_bd_design.
    set_property -dict [list CONFIG.PSU__USE__M_AXI_GP0 1 CONFIG.PSU__USE__M_AXI_GP1 0 \
        CONFIG.PSU__USE__M_AXI_GP2 0 \
        CONFIG.PSU__USE__S_AXI_GP2 1 CONFIG.PSU__SAXIGP2__DATA_WIDTH [expr {8 * $bus_bytes}] \
        CONFIG.PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ $fclk_mhz CONFIG.PSU__USE__IRQ0 1] $ps_cell
    set gp_master /ps/M_AXI_HPM0_FPD
    set hp_slave /ps/S_AXI_HP0_FPD
    set irq_pin ps/pl_ps_irq0
    set lite_base 0xA0000000     ;# M_AXI_HPM0_FPD window
    set dma_addr_width 64        ;# ZCU104 / KV260 / Ultra96 DDR reaches above 4 GiB
}

set irq [create_bd_cell -type ip -vlnv xilinx.com:ip:xlconcat irq_concat]
set_property CONFIG.NUM_PORTS 6 $irq
set port 0
foreach bits {4 8} {
    set core [create_bd_cell -type ip -vlnv ohq-pynq:ohq:ohq_conv:1.0 ohq_int$bits]
    set cfg [list CONFIG.BITS $bits CONFIG.BUS_BYTES $bus_bytes]
    foreach {k v} $core_params($bits) { lappend cfg CONFIG.$k $v }
    set_property -dict $cfg $core
    set dma [create_bd_cell -type ip -vlnv xilinx.com:ip:axi_dma dma_int$bits]
    set w [expr {8 * $bus_bytes}]
    # Simple mode, 26-bit length register (transfers up to 64 MiB - 1, pynq's buffer_max_size).
    set_property -dict [list CONFIG.c_include_sg 0 CONFIG.c_sg_length_width 26 \
        CONFIG.c_addr_width $dma_addr_width \
        CONFIG.c_m_axi_mm2s_data_width $w CONFIG.c_m_axis_mm2s_tdata_width $w \
        CONFIG.c_m_axi_s2mm_data_width $w CONFIG.c_s_axis_s2mm_tdata_width $w \
        CONFIG.c_mm2s_burst_size 64 CONFIG.c_s2mm_burst_size 64] $dma
    connect_bd_intf_net [get_bd_intf_pins dma_int$bits/M_AXIS_MM2S] [get_bd_intf_pins ohq_int$bits/s_axis]
    connect_bd_intf_net [get_bd_intf_pins ohq_int$bits/m_axis] [get_bd_intf_pins dma_int$bits/S_AXIS_S2MM]
    foreach pin [list ohq_int$bits/interrupt dma_int$bits/mm2s_introut dma_int$bits/s2mm_introut] {
        connect_bd_net [get_bd_pins $pin] [get_bd_pins irq_concat/In$port]
        incr port
    }
}
foreach s {ohq_int4/s_axi_control ohq_int8/s_axi_control dma_int4/S_AXI_LITE dma_int8/S_AXI_LITE} {
    apply_bd_automation -rule xilinx.com:bd_rule:axi4 \
        -config [list Master $gp_master Clk Auto] [get_bd_intf_pins $s]
}
foreach m {dma_int4/M_AXI_MM2S dma_int4/M_AXI_S2MM dma_int8/M_AXI_MM2S dma_int8/M_AXI_S2MM} {
    apply_bd_automation -rule xilinx.com:bd_rule:axi4 \
        -config [list Slave $hp_slave Clk Auto] [get_bd_intf_pins $m]
}
connect_bd_net [get_bd_pins irq_concat/dout] [get_bd_pins $irq_pin]
# Fixed AXI4-Lite addresses, 64 KiB each (ohq_pynq/hw/hwh.py LITE_OFFSET); the DMAs' view of DDR
# is assigned automatically.
foreach {seg offset} {ohq_int4/s_axi_control/reg0 0x00000 ohq_int8/s_axi_control/reg0 0x10000
                      dma_int4/S_AXI_LITE/Reg 0x20000 dma_int8/S_AXI_LITE/Reg 0x30000} {
    assign_bd_address -offset [format 0x%08X [expr {$lite_base + $offset}]] -range 64K \
        -target_address_space [get_bd_addr_spaces ps/Data] [get_bd_addr_segs $seg]
}
assign_bd_address
validate_bd_design
save_bd_design

set bd [get_files $bd_name.bd]
generate_target all $bd
make_wrapper -files $bd -top
add_files -norecurse [file join [file dirname $bd] hdl ${bd_name}_wrapper.v]
set_property top ${bd_name}_wrapper [current_fileset]
launch_runs impl_1 -to_step write_bitstream -jobs 4
wait_on_run impl_1
set impl [get_runs impl_1]
set run_dir [get_property DIRECTORY $impl]
if {[get_property PROGRESS $impl] ne "100%"} { error "implementation failed for $board (see $run_dir)" }

# Timing: a bitstream with negative slack may compute wrong results at fclk; do not ship it.
set report $run_dir/${bd_name}_wrapper_timing_summary_routed.rpt
set wns [get_property STATS.WNS $impl]
set whs [get_property STATS.WHS $impl]
if {$wns eq "" || $whs eq "" || $wns < 0 || $whs < 0} {
    error "timing not met for $board at $fclk_mhz MHz: WNS $wns ns, WHS $whs ns (see $report); no bitstream written. Lower fclk_hz in ohq_pynq/hw/boards.json or add a register stage (vivado/README.md)."
}

# The hardware hand-off, where the block design's generation writes it (as PYNQ's own
# build_bitstream.tcl copies it).
set hwh $out/proj/$proj.gen/sources_1/bd/$bd_name/hw_handoff/$bd_name.hwh
if {![file exists $hwh]} { error "no hardware hand-off at $hwh; was the block design generated?" }
file copy -force [file join $run_dir ${bd_name}_wrapper.bit] $out/ohq.bit
file copy -force $hwh $out/ohq.hwh
puts "wrote $out/ohq.bit and $out/ohq.hwh (WNS $wns ns, WHS $whs ns at $fclk_mhz MHz)"
