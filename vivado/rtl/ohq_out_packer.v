// ohq_out_packer: words of up to PE output elements (out_bits each, lanes >= nvalid dropped)
// in, AXI4-Stream beats of BUS_BYTES out. Elements are lanes_pk little-end first; each pixel's
// channel vector ends on a byte boundary (pix_end); the last word (last) pads the stream with
// zero bytes to a whole beat and raises tlast on that beat. tkeep is all ones.
`default_nettype none
module ohq_out_packer #(
    parameter integer PE = 8,
    parameter integer BUS_BYTES = 8
) (
    input  wire                    clk,
    input  wire                    rst_n,
    input  wire                    clear,
    input  wire                    ob8,         // 1: 8-bit outputs, 0: 4-bit outputs
    input  wire [PE*8-1:0]         in_data,     // lane p in bits [8p+7:8p] (low out_bits used)
    input  wire [NVW-1:0]          in_nvalid,   // lanes 0..nvalid-1 are real channels
    input  wire                    in_pix_end,
    input  wire                    in_last,
    input  wire                    in_valid,
    output wire                    in_ready,
    output reg  [BUS_BYTES*8-1:0]  m_tdata,
    output reg                     m_tvalid,
    input  wire                    m_tready,
    output reg                     m_tlast
);
    localparam integer NVW = $clog2(PE + 1);
    localparam integer BB = BUS_BYTES * 8;
    localparam integer OBW = BB + PE * 8 + 8;              // bit buffer
    localparam integer FW = $clog2(2 * BB + PE * 8 + 16);    // holds the fill rounded up to a beat

    reg [OBW-1:0] obuf;
    reg [FW-1:0]  ofill;       // bits held
    reg           flushing;    // last word accepted: everything left goes out, tlast at the end

    // Compact the lanes at the output width and zero lanes >= nvalid.
    reg [PE*8-1:0] lanes_pk;
    integer p;
    always @* begin
        lanes_pk = {PE*8{1'b0}};
        for (p = 0; p < PE; p = p + 1) begin
            if (p < in_nvalid) begin
                if (ob8) lanes_pk[p*8 +: 8] = in_data[p*8 +: 8];
                else     lanes_pk[p*4 +: 4] = in_data[p*8 +: 4];
            end
        end
    end

    wire out_free = !m_tvalid || m_tready;
    wire emit = out_free && (ofill >= BB[FW-1:0]);
    localparam [FW-1:0] NBB = BB[FW-1:0];
    wire [FW-1:0] fill_e = emit ? ofill - NBB : ofill;
    wire [OBW-1:0] buf_e = emit ? (obuf >> BB) : obuf;
    assign in_ready = !flushing && (fill_e < BB[FW-1:0]);
    wire accept = in_valid && in_ready;
    wire [FW-1:0] size = in_nvalid * (ob8 ? 8 : 4);
    wire [FW-1:0] f1 = fill_e + size;
    wire [FW-1:0] f2 = in_pix_end ? ((f1 + 7) & ~7) : f1;
    wire [FW-1:0] f3 = in_last ? ((f2 + NBB - 1'b1) & ~(NBB - 1'b1)) : f2;   // BB is a power of two

    always @(posedge clk) begin
        if (!rst_n || clear) begin
            obuf <= {OBW{1'b0}};
            ofill <= {FW{1'b0}};
            flushing <= 1'b0;
            m_tvalid <= 1'b0;
            m_tlast <= 1'b0;
            m_tdata <= {BB{1'b0}};
        end else begin
            if (m_tvalid && m_tready) m_tvalid <= 1'b0;
            if (emit) begin
                m_tdata <= obuf[BB-1:0];
                m_tvalid <= 1'b1;
                m_tlast <= flushing && (ofill == BB[FW-1:0]);
            end
            if (accept) begin
                obuf <= buf_e | ({{(OBW-PE*8){1'b0}}, lanes_pk} << fill_e);
                ofill <= f3;
                if (in_last) flushing <= 1'b1;
            end else begin
                obuf <= buf_e;
                ofill <= fill_e;
            end
            if (flushing && emit && ofill == BB[FW-1:0]) flushing <= 1'b0;
        end
    end
endmodule
`default_nettype wire
