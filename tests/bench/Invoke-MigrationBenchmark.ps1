<#
.SYNOPSIS
    End-to-end migration benchmark (issue 4): None, Native (QEMU's XBZRLE), Lz4 and Delta on the
    same dirtying test guest over tc-shaped links, every cell repeated; writes docs/benchmarks.md.

.DESCRIPTION
    Creates a network namespace and runs every cell with Invoke-BenchmarkCell.ps1 inside it
    (ip netns exec), so both QEMUs, QEMU's TCP and the tunnel's TCP cross the shaped link:
    100mbit and 1gbit shape the namespace's loopback (MTU 1500) with tbf; 1gbit-20ms goes through
    tests/bench/delayline (a TUN device that returns every packet after 10 ms, tbf-shaped), because
    this kernel has no sch_netem. The namespace is removed at the end. Without root (or with
    -Unshaped) the cells run unshaped on the host loopback, and the output says so.

    The full grid: a 512 MiB VM (256 MiB of data, hot 64 MiB at 20,000 pages/s) with the workloads
    scatter (16 bytes per page), run (a contiguous 256-byte run) and random (whole pages) on all three
    links, an idle guest, and a 1 GiB VM; four modes each; 3 runs per cell (about 50 minutes on 2
    cores). -Quick: a 256 MiB VM, scatter and random over 100mbit, scatter over 1gbit-20ms, idle
    over 1gbit, one run per cell (under 10 minutes). The first mode of each row and workload also
    runs Measure-KvmVM before migrating, so the page shows prediction beside measurement.

    Writes tests/bench/results/<name>.json (one object per run, rounds trimmed), <name>.md (per run)
    and <name>-summary.md (median and min-max spread per cell, CPU seconds of the source QEMU, the
    destination QEMU and the engine); a whole grid also writes docs/benchmarks.md with PNG charts
    under docs/img/ rendered by DeltaMigrate.Reports.MigrationReport: a rounds chart per run and a
    comparison chart per row and workload (from MigrationResults the cells serialized as JSON).

.EXAMPLE
    # The full grid, 3 runs per cell, as root, from the repo root (or: dotnet pwsh ./build.ps1 bench):
    dotnet pwsh -NoProfile -File tests/bench/Invoke-MigrationBenchmark.ps1

.EXAMPLE
    # The reduced grid (under 10 minutes, as root), into docs/benchmarks-quick.md:
    dotnet pwsh -NoProfile -File tests/bench/Invoke-MigrationBenchmark.ps1 -Quick

.EXAMPLE
    # One cell to check the harness (does not touch docs/benchmarks.md):
    dotnet pwsh -NoProfile -File tests/bench/Invoke-MigrationBenchmark.ps1 -Cell '1gbit-20ms/scatter/Delta' -Repeat 1 -Name smoke
#>
[CmdletBinding()]
param(
    # Cell ids to run (wildcards), e.g. '100mbit/scatter/Delta', '1gbit/*', '*/None'. Default: all.
    [string[]] $Cell = @('*'),
    # The module to import; default: a private snapshot copied from the repo at start.
    [string] $ModulePath,
    [string] $Guest = (Join-Path $PSScriptRoot '../guest/out/guest.elf'),
    [string] $Name = "full-$([DateTime]::UtcNow.ToString('yyyyMMdd-HHmm'))",
    [string] $OutDirectory = (Join-Path $PSScriptRoot 'results'),
    [string] $Namespace = 'dmbench',
    [switch] $Unshaped,
    # The reduced grid of issue 4 (see the description); also writes -Markdown and charts.
    [switch] $Quick,
    # Runs per cell (default 3; 1 with -Quick).
    [ValidateRange(1, 20)] [int] $Repeat,
    # Where to write the benchmark page (default for a whole grid: docs/benchmarks.md, with -Quick docs/benchmarks-quick.md; none for a subset).
    [string] $Markdown,
    # Where the charts go (PNG); the page links them relatively.
    [string] $ImageDirectory,
    # Re-render the table (and re-save the trimmed JSON) from an earlier run's JSON; runs nothing.
    [string] $RenderFrom
)

$ErrorActionPreference = 'Stop'
$benchWatch = [Diagnostics.Stopwatch]::StartNew()
$repo = (Resolve-Path (Join-Path $PSScriptRoot '../..')).Path
if (-not $Repeat) { $Repeat = if ($Quick) { 1 } else { 3 } }
if (-not $PSBoundParameters.ContainsKey('Name') -and $Quick) { $Name = "quick-$([DateTime]::UtcNow.ToString('yyyyMMdd-HHmm'))" }
# A whole grid writes its page: the full one docs/benchmarks.md, the reduced one docs/benchmarks-quick.md.
if (-not $Markdown -and -not $Cell.Where({ $_ -ne '*' })) { $Markdown = Join-Path $repo $(if ($Quick) { 'docs/benchmarks-quick.md' } else { 'docs/benchmarks.md' }) }
if (-not $ImageDirectory) { $ImageDirectory = if ($Markdown) { Join-Path ([IO.Path]::GetDirectoryName([IO.Path]::GetFullPath($Markdown))) 'img' } else { Join-Path $OutDirectory "$Name-img" } }
$Guest = (Resolve-Path $Guest).Path
$inner = Join-Path $PSScriptRoot 'Invoke-BenchmarkCell.ps1'
$pwshDll = Join-Path $PSHOME 'pwsh.dll'
$dotnet = (Get-Process -Id $PID).Path   # the dotnet host running this pwsh

if (-not $ModulePath -and -not $RenderFrom) {
    # The module may be rebuilt while the grid runs: benchmark a private copy taken now.
    $snap = Join-Path ([IO.Path]::GetTempPath()) "dm-bench-$Name/module-snapshot"
    New-Item -ItemType Directory $snap -Force | Out-Null
    Copy-Item -Recurse -Force "$repo/DeltaMigrate.psd1", "$repo/module", "$repo/en-US" $snap
    $ModulePath = "$snap/DeltaMigrate.psd1"
}

# ---- links and the grid ------------------------------------------------------------------------
# tbf on the namespace's loopback (MTU 1500); every packet crosses lo once per direction.
$shape = @{ '100mbit' = 'rate 100mbit burst 256kb latency 50ms'; '1gbit' = 'rate 1gbit burst 1mb latency 50ms' }
# The delayed link: this kernel has no sch_netem, so tests/bench/delayline (a TUN device that sends
# every packet back after 10 ms with the addresses swapped) carries it, tbf-shaped on that device;
# the migration meets on 10.9.0.1 (listen) / 10.9.0.2 (connect) through $env:DELTAMIGRATE_LOCAL_LINK.
$delayLinks = @{ '1gbit-20ms' = @{ Tbf = $shape['1gbit']; OneWayMs = 10; Device = 'dmdelay'; Listen = '10.9.0.1'; Connect = '10.9.0.2' } }
$linkBandwidth = @{ '100mbit' = 12500000; '1gbit' = 125000000; '1gbit-20ms' = 125000000 }   # bytes/s, for Measure-KvmVM's prediction

function New-Cells($Rows, [object[]] $Modes, [long] $Memory, [int] $Timeout, [int] $WarmupHeartbeats) {
    # Native gets the same cache as Delta's default (half the VM), so the codec is what differs.
    foreach ($q in $Rows) {
        $first = $true
        foreach ($m in $Modes) {
            $id = if ($m.Mode -eq 'Native') { "Native$($Memory / 2 / 1MB)" } else { $m.Mode }
            $label = if ($m.Mode -eq 'Native') { "Native $($Memory / 2 / 1MB) MiB" } elseif ($m.Mode -eq 'Delta') { 'Delta (default)' } else { $m.Mode }
            [pscustomobject]@{
                Id = "$($q.Row)/$($q.Workload)/$id"; Row = $q.Row; Workload = $q.Workload; Label = $label; Mode = $m.Mode; Link = $q.Link
                Append = $q.Append; CacheSize = $(if ($m.Mode -eq 'Native') { [long]($Memory / 2) } else { 0L }); Timeout = $Timeout
                TimeoutAction = 'Cancel'; RequestedRate = $q.Rate; Memory = $Memory; WarmupHeartbeats = $WarmupHeartbeats
                # The first mode of each row also runs Measure-KvmVM (once, in its first run): the prediction for every mode.
                Measure = $first
            }
            $first = $false
        }
    }
}
$modes = @(@{ Mode = 'None' }, @{ Mode = 'Native' }, @{ Mode = 'Lz4' }, @{ Mode = 'Delta' })
$workloads = [ordered]@{
    scatter = 'bytes=16 pattern=scatter fill=random'    # the paper's case: a few words per page
    run     = 'bytes=256 pattern=run fill=random'       # one contiguous 256-byte run per page
    random  = 'pattern=random fill=random'              # whole pages of new random bytes: delta's worst case
}
$grid = if ($Quick) {
    # The reduced grid: 256 MiB VM, 128 MiB working set, hot 32 MiB at 20,000 pages/s.
    $g = 'ws=128 hot=32 rate=20000'
    New-Cells @(
        @{ Row = 'q1'; Link = '100mbit'; Workload = 'scatter'; Append = "$g $($workloads.scatter)"; Rate = 20000 }
        @{ Row = 'q1'; Link = '100mbit'; Workload = 'random'; Append = "$g $($workloads.random)"; Rate = 20000 }
        @{ Row = 'q2'; Link = '1gbit-20ms'; Workload = 'scatter'; Append = "$g $($workloads.scatter)"; Rate = 20000 }
        # Idle once (a fast link keeps it short): what each mode costs when nothing is dirtied.
        @{ Row = 'idle'; Link = '1gbit'; Workload = 'idle'; Append = 'ws=128 hot=32 rate=0 fill=random'; Rate = 0 }
    ) $modes 256MB 40 10   # 40 s: Delta and Native converge in about 15 s here; what never converges costs less
}
else {
    # The full grid: a 512 MiB VM with 256 MiB of random data, hot 64 MiB dirtied at 20,000 pages/s
    # (78 MiB/s of dirtied pages: more than either link carries), every workload on every link;
    # an idle guest; and a 1 GiB VM (512 MiB of data, hot 128 MiB).
    $g = 'ws=256 hot=64 rate=20000'
    $rows = foreach ($link in '100mbit', '1gbit', '1gbit-20ms') {
        foreach ($w in $workloads.Keys) { @{ Row = $link; Link = $link; Workload = $w; Append = "$g $($workloads[$w])"; Rate = 20000 } }
    }
    New-Cells $rows $modes 512MB 60 20
    New-Cells @(@{ Row = '1gbit'; Link = '1gbit'; Workload = 'idle'; Append = 'ws=256 hot=64 rate=0 fill=random'; Rate = 0 }) $modes 512MB 60 20
    New-Cells @(@{ Row = '1gbit'; Link = '1gbit'; Workload = 'scatter-1GiB'; Append = "ws=512 hot=128 rate=20000 $($workloads.scatter)"; Rate = 20000 }) $modes 1GB 60 20
}
$Cell = @($Cell | ForEach-Object { $_ -split ',' } | ForEach-Object Trim)   # -File passes 'a,b' as one string
$selected = @($grid | Where-Object { $id = $_.Id; @($Cell | Where-Object { $id -like $_ }).Count -gt 0 })
if (-not $selected) { throw "No cell matches $($Cell -join ', '). Cells: $($grid.Id -join ', ')" }

# ---- shaping ---------------------------------------------------------------------------------
$isRoot = (& id -u) -eq '0'
$shaped = $isRoot -and -not $Unshaped
if (-not $shaped) {
    Write-Warning ($(if (-not $isRoot) { 'Not root: ' } else { '-Unshaped: ' }) +
        'running UNSHAPED on the host loopback. Downtime and total time then say little (QEMU ignores its bandwidth limit in the final copy, and loopback is fast).')
}

function Invoke-Native([string] $File, [string[]] $Arguments, [switch] $IgnoreError) {
    & $File @Arguments 2>&1 | ForEach-Object { Write-Verbose "$File $($Arguments -join ' '): $_" }
    if ($LASTEXITCODE -ne 0 -and -not $IgnoreError) { throw "$File $($Arguments -join ' ') failed ($LASTEXITCODE)" }
}

function Set-Link([string] $Link) {
    # The plain links shape lo; the delayed link has its own device (Start-DelayLine), and lo stays unshaped.
    $tc = @('netns', 'exec', $Namespace, 'tc', 'qdisc')
    Invoke-Native ip ($tc + @('del', 'dev', 'lo', 'root')) -IgnoreError
    if (-not $delayLinks[$Link]) { Invoke-Native ip ($tc + @('add', 'dev', 'lo', 'root', 'tbf') + ($shape[$Link] -split ' ')) }
}

function Start-DelayLine($Link, [string] $LogFile) {
    # Builds tests/bench/delayline with gcc if needed, gives it a tbf-shaped TUN device in the namespace
    # and waits until it is attached. Returns its process (kill it before deleting the namespace).
    $src = Join-Path $PSScriptRoot 'delayline/delayline.c'
    $bin = Join-Path $PSScriptRoot 'delayline/out/delayline'
    if (-not (Test-Path $bin) -or (Get-Item $src).LastWriteTimeUtc -gt (Get-Item $bin).LastWriteTimeUtc) {
        New-Item -ItemType Directory (Split-Path $bin) -Force | Out-Null
        Invoke-Native gcc @('-O2', '-Wall', '-Wextra', '-Werror', '-o', $bin, $src)
    }
    $ns = @('netns', 'exec', $Namespace)
    Invoke-Native ip ($ns + @('ip', 'tuntap', 'add', 'dev', $Link.Device, 'mode', 'tun'))
    Invoke-Native ip ($ns + @('ip', 'addr', 'add', "$($Link.Listen)/24", 'dev', $Link.Device))
    Invoke-Native ip ($ns + @('ip', 'link', 'set', $Link.Device, 'mtu', '1500', 'up'))
    Invoke-Native ip ($ns + @('tc', 'qdisc', 'add', 'dev', $Link.Device, 'root', 'tbf') + ($Link.Tbf -split ' '))
    $p = Start-Process ip -ArgumentList ($ns + @($bin, $Link.Device, $Link.OneWayMs)) -PassThru -RedirectStandardOutput $LogFile -RedirectStandardError "$LogFile.err"
    $deadline = [DateTime]::UtcNow.AddSeconds(10)
    while (-not (Select-String -Path $LogFile -Pattern '^delayline ' -Quiet -ErrorAction Ignore)) {
        if ($p.HasExited -or [DateTime]::UtcNow -gt $deadline) { throw "delayline did not start: $(Get-Content -Raw "$LogFile.err" -ErrorAction Ignore)" }
        Start-Sleep -Milliseconds 100
    }
    $p
}

function Save-Results($Cells, [bool] $Shaped) {
    # Small enough to commit: per cell only the first and last four rounds (RoundsRecorded has the count).
    $trimmed = foreach ($c in $Cells) {
        $copy = [ordered]@{}
        foreach ($p in $c.PSObject.Properties) { $copy[$p.Name] = $p.Value }
        $r = @($c.Rounds)
        if ($r.Count -gt 8) { $copy.Rounds = @($r[0..3]) + @($r[-4..-1]); $copy.RoundsTrimmed = $true }
        [pscustomobject]$copy
    }
    [ordered]@{
        Name = $Name; Shaped = $Shaped; Host = [Environment]::MachineName; Cpus = [Environment]::ProcessorCount
        Qemu = ((& qemu-system-x86_64 --version) | Select-Object -First 1); Module = $ModulePath
        Repetitions = $Repeat; Quick = [bool]$Quick
        WallSeconds = $(if ($RenderFrom) { $renderedWall } else { [math]::Round($benchWatch.Elapsed.TotalSeconds) }); Cells = @($trimmed)
    } | ConvertTo-Json -Depth 6 | Set-Content (Join-Path $OutDirectory "$Name.json")
}

New-Item -ItemType Directory $OutDirectory -Force | Out-Null
if ($RenderFrom) {
    $loaded = Get-Content -Raw $RenderFrom | ConvertFrom-Json
    if ($loaded.Repetitions) { $Repeat = $loaded.Repetitions }
    if ($loaded.Quick) { $Quick = [switch]$true }
    $renderedWall = $loaded.WallSeconds
    $results = [Collections.Generic.List[object]]::new()
    foreach ($c in $loaded.Cells) { $results.Add($c) }
    if (-not $PSBoundParameters.ContainsKey('Name')) { $Name = $loaded.Name }
    Save-Results $results $loaded.Shaped
}
else {
    $work = Join-Path ([IO.Path]::GetTempPath()) "dm-bench-$Name"
    New-Item -ItemType Directory $work -Force | Out-Null

    $results = [Collections.Generic.List[object]]::new()
    $delayLines = @()
    try {
        if ($shaped) {
            if (@(& ip netns list | Where-Object { ($_ -split ' ')[0] -eq $Namespace }).Count) {
                $shaped = $false   # not ours: leave it alone in finally
                throw "Network namespace '$Namespace' exists already (another benchmark running?). Remove it with 'ip netns del $Namespace' or pass -Namespace."
            }
            Invoke-Native ip @('netns', 'add', $Namespace)
            Invoke-Native ip @('netns', 'exec', $Namespace, 'ip', 'link', 'set', 'lo', 'mtu', '1500', 'up')
            foreach ($l in @($selected.Link | Sort-Object -Unique | Where-Object { $delayLinks[$_] })) {
                $delayLines += Start-DelayLine $delayLinks[$l] (Join-Path $work "delayline-$l.log")
            }
        }
        $i = 0
        $runs = foreach ($c in $selected) { foreach ($rep in 1..$Repeat) { [pscustomobject]@{ Cell = $c; Rep = $rep } } }
        if ($Markdown -or $Quick) { New-Item -ItemType Directory $ImageDirectory -Force | Out-Null }
        foreach ($run in $runs) {
            $c = $run.Cell
            $i++
            if ($shaped) { Set-Link $c.Link }
            $qdisc = if (-not $shaped) { 'unshaped' } elseif ($delayLinks[$c.Link]) { "delayline $($delayLinks[$c.Link].OneWayMs) ms each way; " + ((& ip netns exec $Namespace tc qdisc show dev $delayLinks[$c.Link].Device) -join ' ') } else { (& ip netns exec $Namespace tc qdisc show dev lo) -join ' ' }
            $slug = ($c.Id -replace '[/ ]', '-') + $(if ($Repeat -gt 1) { "-r$($run.Rep)" })
            $out = Join-Path $work ("{0:d2}-{1}.json" -f $i, $slug)
            $stj = Join-Path $work "$slug.result.json"
            $cellArgs = @('-NoProfile', '-NonInteractive', '-File', $inner, '-ModulePath', $ModulePath, '-Guest', $Guest,
                '-Append', $c.Append, '-Compress', $c.Mode, '-OutFile', $out, '-Timeout', $c.Timeout, '-TimeoutAction', $c.TimeoutAction,
                '-Memory', $c.Memory, '-WarmupHeartbeats', $c.WarmupHeartbeats, '-ResultJson', $stj,
                '-VmName', (($c.Id -split '/' | Select-Object -SkipLast 1) -join '-'))
            if ($Markdown -or $Quick) { $cellArgs += @('-RoundsPng', (Join-Path $ImageDirectory "$Name-$slug-rounds.png")) }
            if ($c.CacheSize) { $cellArgs += @('-CacheSize', $c.CacheSize) }
            if ($c.Measure -and $run.Rep -eq 1) { $cellArgs += @('-MeasureBandwidth', $linkBandwidth[$c.Link]) }
            # The delayed link: the migration meets on the delay line's addresses instead of loopback.
            $env:DELTAMIGRATE_LOCAL_LINK = if ($shaped -and $delayLinks[$c.Link]) { '{0},{1}' -f $delayLinks[$c.Link].Listen, $delayLinks[$c.Link].Connect } else { $null }
            $cmd = if ($shaped) { @('ip', 'netns', 'exec', $Namespace, $dotnet, $pwshDll) } else { @($dotnet, $pwshDll) }
            Write-Host ("[{0:HH:mm:ss}] {1}/{2} {3} (run {6}/{7}): {4} over {5}" -f [DateTime]::Now, $i, $runs.Count, $c.Id, $c.Label, $(if ($shaped) { $c.Link } else { 'unshaped loopback' }), $run.Rep, $Repeat)
            $watch = [Diagnostics.Stopwatch]::StartNew()
            & $cmd[0] @($cmd[1..($cmd.Count - 1)] + $cellArgs) 2>&1 | ForEach-Object { Write-Host "    $_" }
            $data = if (Test-Path $out) { Get-Content -Raw $out | ConvertFrom-Json } else { [pscustomobject]@{ HarnessError = "no result file (exit $LASTEXITCODE)" } }
            $entry = [ordered]@{ Id = $c.Id; Rep = $run.Rep; Row = $c.Row; Workload = $c.Workload; Label = $c.Label; MemoryMiB = $c.Memory / 1MB; ResultJsonPath = $(if (Test-Path $stj) { $stj }); Link = $(if ($shaped) { $c.Link } else { 'unshaped' }); Qdisc = $qdisc; RequestedRate = $c.RequestedRate; WallSeconds = [math]::Round($watch.Elapsed.TotalSeconds) }
            foreach ($p in $data.PSObject.Properties) { $entry[$p.Name] = $p.Value }
            $results.Add([pscustomobject]$entry)
            $e = $results[-1]
            Write-Host ("    -> {0} converged={1} total={2}s downtime={3}ms wire={4}MiB stream={5}MiB syncs={6} guest rate {7}/{8} p/s cpu src/dst/engine {10}/{11}/{12} s {9}" -f
                $e.Status, $e.Converged, $e.TotalSeconds, $e.DowntimeMs, $e.WireMiB, $e.StreamMiB, $e.DirtySyncCount, $e.GuestRateBefore, $e.GuestRateDuring, "$($e.ErrorId)$($e.HarnessError)$($e.ChartError)",
                $e.CpuSrcSeconds, $e.CpuDstSeconds, $e.CpuEngineSeconds)
            # Save as we go: a long grid that dies halfway still leaves its rows.
            Save-Results $results $shaped
        }
    }
    finally {
        $env:DELTAMIGRATE_LOCAL_LINK = $null
        foreach ($p in $delayLines) { $p.Kill($true); $p.WaitForExit() }
        if ($shaped) { Invoke-Native ip @('netns', 'del', $Namespace) -IgnoreError }
    }
}

# ---- the table -------------------------------------------------------------------------------
function Format-Cell($e) {
    $status = if ($e.HarnessError) { "harness error: $($e.HarnessError -replace '\s+', ' ')" }
    elseif ($e.Status -eq 'Completed' -and $e.TimedOut) { 'paused at timeout' }
    elseif ($e.Status -eq 'Completed') { 'converged' }
    elseif ($e.ErrorId -like 'MigrationTimedOut*') { 'never converges (cancelled at timeout)' }
    else { "$($e.Status) $($e.ErrorId -replace ',.*$', '')" }
    # Native: QEMU's xbzrle-cache 'pages' (pages sent as XBZRLE) lands in CacheHits, and the module's
    # XbzrlePages for Native is bytes / encoding-rate, which is not a page count; show QEMU's pages, marked †.
    $xb = if (-not $e.Compression) { '-' }
    elseif ($e.Compress -eq 'Native') { '{0:N0}† / -' -f $e.Compression.CacheHits }
    else { '{0:N0} / {1:N0}' -f $e.Compression.XbzrlePages, $e.Compression.CacheHits }
    $down = if ($e.Status -eq 'Completed' -and $null -ne $e.DowntimeMs) { '{0:N0}' -f $e.DowntimeMs } else { '-' }
    $rate = if ($null -ne $e.GuestRateBefore) { '{0:N0} / {1:N0}' -f $e.GuestRateBefore, $e.GuestRateDuring } else { '-' }
    # TotalTime as the module reports it; when it is 0 (seen with Delta), our own clock around Move-KvmVM, marked *.
    $total = if ($e.TotalSeconds -gt 0) { '{0:N1}' -f $e.TotalSeconds } elseif ($e.MoveSeconds) { '{0:N1}*' -f $e.MoveSeconds } else { '-' }
    $rowLabel = "$($e.Link), $($e.MemoryMiB) MiB, $($e.Workload)" + $(if ($e.Rep -gt 1) { " (run $($e.Rep))" })
    '| {0}{1} | {2} | {3} | {4} | {5} | {6} | {7} | {8} | {9} | {10} ({11:N0}) |' -f $rowLabel, '', $e.Label, $status,
        $total, $down, $e.WireMiB, $e.StreamMiB, $e.DirtySyncCount, $xb, $rate, $e.RequestedRate
}
$table = @(
    '| link, VM, workload | mode | result | total s | downtime ms | wire MiB | stream MiB | rounds (dirty syncs) | XBZRLE pages / cache hits | guest pages/s before / during (asked) |'
    '|---|---|---|---|---|---|---|---|---|---|'
    $results | ForEach-Object { Format-Cell $_ }
)
$table | Set-Content (Join-Path $OutDirectory "$Name.md")
$table -join "`n"

# ---- the summary over repetitions, the charts and the page (docs/benchmarks.md) --------------
function Get-Median([object[]] $Values) {
    $v = @($Values | Where-Object { $null -ne $_ } | ForEach-Object { [double]$_ } | Sort-Object)
    if ($v.Count -eq 0) { return $null }
    if ($v.Count % 2) { $v[($v.Count - 1) / 2] } else { ($v[$v.Count / 2 - 1] + $v[$v.Count / 2]) / 2 }
}
function Format-Spread([object[]] $Values, [string] $Format = 'N1') {
    # "median (min-max)" over the runs; only the value when there is one run.
    $v = @($Values | Where-Object { $null -ne $_ } | ForEach-Object { [double]$_ })
    if ($v.Count -eq 0) { return '-' }
    $m = (Get-Median $v).ToString($Format, [Globalization.CultureInfo]::InvariantCulture)
    if ($v.Count -eq 1) { return $m }
    $s = $v | Measure-Object -Minimum -Maximum
    '{0} ({1}-{2})' -f $m, $s.Minimum.ToString($Format, [Globalization.CultureInfo]::InvariantCulture), $s.Maximum.ToString($Format, [Globalization.CultureInfo]::InvariantCulture)
}
function Get-RunTotal($e) { if ($e.TotalSeconds -gt 0) { [double]$e.TotalSeconds } elseif ($e.MoveSeconds) { [double]$e.MoveSeconds } else { $null } }
function Get-RunResult($e) {
    if ($e.HarnessError) { 'harness error' }
    elseif ($e.Status -eq 'Completed' -and $e.TimedOut) { 'paused at timeout' }
    elseif ($e.Status -eq 'Completed') { 'converged' }
    elseif ($e.ErrorId -like 'MigrationTimedOut*') { 'cancelled at timeout' }
    else { "$($e.Status) $($e.ErrorId -replace ',.*$', '')".Trim() }
}

# Group-Object sorts by name: keep the grid's order instead.
$order = @{}
foreach ($e in $results) { foreach ($k in $e.Id, "$($e.Row)/$($e.Workload)") { if (-not $order.ContainsKey($k)) { $order[$k] = $order.Count } } }
$groups = @($results | Group-Object Id | Sort-Object { $order[$_.Name] } | ForEach-Object {
        $runs = @($_.Group)
        $e = $runs[0]
        $done = @($runs | Where-Object { $_.Status -eq 'Completed' -and -not $_.TimedOut })
        $outcomes = @($runs | ForEach-Object { Get-RunResult $_ } | Group-Object | ForEach-Object { if ($runs.Count -gt 1) { "$($_.Count)x $($_.Name)" } else { $_.Name } })
        [pscustomobject]@{
            Id = $_.Name; Row = $e.Row; Workload = $e.Workload; Link = $e.Link; Label = $e.Label; Mode = $e.Compress; Runs = $runs; MemoryMiB = $e.MemoryMiB
            Converged = $done.Count; N = $runs.Count; Outcome = $outcomes -join ', '
            Total = @($runs | ForEach-Object { Get-RunTotal $_ }); Downtime = @($done | ForEach-Object DowntimeMs)
            Wire = @($runs | ForEach-Object WireMiB); Rounds = @($runs | ForEach-Object DirtySyncCount)
            CpuSrc = @($runs | ForEach-Object CpuSrcSeconds); CpuDst = @($runs | ForEach-Object CpuDstSeconds); CpuEngine = @($runs | ForEach-Object CpuEngineSeconds)
            RateDuring = @($runs | ForEach-Object GuestRateDuring)
        }
    })
$summary = @(
    "| link | VM MiB | workload | mode | result | converged | total s | downtime ms | wire MiB | rounds | CPU s src / dst / engine | guest pages/s during |"
    '|---|---|---|---|---|---|---|---|---|---|---|---|'
    foreach ($g in $groups) {
        '| {0} | {1} | {2} | {3} | {4} | {5}/{6} | {7} | {8} | {9} | {10} | {11} / {12} / {13} | {14} |' -f $g.Link, $g.MemoryMiB, $g.Workload, $g.Label, $g.Outcome,
            $g.Converged, $g.N, (Format-Spread $g.Total), (Format-Spread $g.Downtime 'N0'), (Format-Spread $g.Wire), (Format-Spread $g.Rounds 'N0'),
            (Format-Spread $g.CpuSrc), (Format-Spread $g.CpuDst), (Format-Spread $g.CpuEngine), (Format-Spread $g.RateDuring 'N0')
    }
)
$summary | Set-Content (Join-Path $OutDirectory "$Name-summary.md")

# Measure-KvmVM's prediction (one sample per row and workload, taken before its first migration)
# beside the measured medians of every mode: at the nominal link rate the cell predicted for, and
# again from the saved sample at the rate the link really carried here (None's wire bytes over its
# time: QEMU under TCG, the engine and the delay line share 2 CPUs and do not fill a 1 Gbit/s link).
$achievedRate = @{}
foreach ($l in @($results.Link | Sort-Object -Unique)) {
    $none = @($results | Where-Object { $_.Link -eq $l -and $_.Compress -eq 'None' -and $_.TotalSeconds -gt 0 -and $_.WireMiB -gt 0 })
    if ($none) { $achievedRate[$l] = [long](Get-Median @($none | ForEach-Object { $_.WireMiB * 1MB / $_.TotalSeconds })) }
}
# The engine's and the reports' types live in the module's own AssemblyLoadContext, where PowerShell's
# [type] literals do not reach (docs/architecture.md, "Load contexts"): look them up in those assemblies.
function Get-DeltaMigrateType([string] $Name) {
    $engine = [AppDomain]::CurrentDomain.GetAssemblies() | Where-Object { $_.GetName().Name -eq 'DeltaMigrate.Engine' } | Select-Object -First 1
    if (-not $engine) { throw "DeltaMigrate.Engine is not loaded: import the module before asking for $Name." }
    $assembly = if ($Name -like 'DeltaMigrate.Reports.*') {
        [Runtime.Loader.AssemblyLoadContext]::GetLoadContext($engine).LoadFromAssemblyName([Reflection.AssemblyName]'DeltaMigrate.Reports')
    }
    else { $engine }
    $assembly.GetType($Name, $true)
}
$predictor = $null
try {
    if (-not (Get-Module DeltaMigrate)) {
        Import-Module $(if ($ModulePath) { $ModulePath } else { Join-Path $repo 'DeltaMigrate.psd1' }) -ErrorAction Stop
    }
    $predictor = Get-DeltaMigrateType 'DeltaMigrate.Engine.Planning.MigrationPredictor'
}
catch { Write-Warning "No re-prediction at the achieved rate: $($_.Exception.Message)" }
function Get-Repredicted($Sampled, [string] $Mode, [long] $Bandwidth) {
    if (-not $predictor -or -not $Sampled.ProfileJson -or -not $Bandwidth) { return $null }
    $profile = [Text.Json.JsonSerializer]::Deserialize($Sampled.ProfileJson, (Get-DeltaMigrateType 'DeltaMigrate.Engine.Planning.MemoryProfile'))
    $options = [Management.Automation.LanguagePrimitives]::ConvertTo(@{
        Bandwidth = $Bandwidth; MaxDowntime = [TimeSpan]::FromSeconds($Sampled.MaxDowntime); TimeLimit = [TimeSpan]::FromSeconds($Sampled.Timeout)
        NativeCacheSize = [long]($Sampled.MemoryMiB * 1MB / 2); DeltaCacheSize = [long]($Sampled.MemoryMiB * 1MB / 2)
    }, (Get-DeltaMigrateType 'DeltaMigrate.Engine.Planning.PredictionOptions'))
    $predictor::Predict($Sampled.Id, $profile, [Management.Automation.LanguagePrimitives]::ConvertTo($Mode, (Get-DeltaMigrateType 'DeltaMigrate.Engine.Migration.CompressionMode')), $options)
}
$yes = { param($b) if ($b) { 'yes' } else { 'no' } }
$predictionTable = @(
    '| link (carried MB/s) | VM MiB | workload | mode | converges: nominal / carried / measured | total s: nominal / carried / measured | downtime ms: carried / measured | wire MiB: carried / measured |'
    '|---|---|---|---|---|---|---|---|'
    foreach ($g in $groups) {
        $sampled = @($results | Where-Object { $_.Row -eq $g.Row -and $_.Workload -eq $g.Workload -and $_.Predictions } | Select-Object -First 1)
        $p = if ($sampled) { $sampled[0].Predictions | Where-Object Mode -EQ $g.Mode | Select-Object -First 1 }
        if (-not $p) { continue }
        $rate = $achievedRate[$g.Link]
        $q = Get-Repredicted $sampled[0] $g.Mode $rate
        '| {0} ({1}) | {2} | {3} | {4} | {5} / {6} / {7}/{8} | {9:N1} / {10} / {11} | {12} / {13} | {14} / {15} |' -f $g.Link,
            $(if ($rate) { '{0:N0}' -f ($rate / 1e6) } else { '-' }), $g.MemoryMiB, $g.Workload, $g.Label,
            (& $yes $p.Converges), $(if ($q) { & $yes $q.Converges } else { '-' }), $g.Converged, $g.N,
            $p.TotalSeconds, $(if ($q) { '{0:N1}' -f $q.TotalTime.TotalSeconds } else { '-' }), (Format-Spread $g.Total),
            $(if ($q) { '{0:N0}' -f $q.Downtime.TotalMilliseconds } else { '-' }), $(if ($g.Downtime.Count) { Format-Spread $g.Downtime 'N0' } else { '-' }),
            $(if ($q) { '{0:N1}' -f ($q.WireBytes / 1MB) } else { '-' }), (Format-Spread $g.Wire)
    }
)
if ($predictionTable.Count -gt 2) { "`n" + ($predictionTable -join "`n") }
"`n" + ($summary -join "`n")

if ($Markdown) {
    New-Item -ItemType Directory $ImageDirectory -Force | Out-Null
    $mdDir = [IO.Path]::GetDirectoryName([IO.Path]::GetFullPath($Markdown))
    $rel = { param($path) [IO.Path]::GetRelativePath($mdDir, $path) -replace '\\', '/' }

    # One comparison chart per row and workload, from real MigrationResult objects: each cell
    # serialized its result with System.Text.Json; deserializing gives MigrationResult again.
    $charts = [ordered]@{}
    $chartNotes = [Collections.Generic.List[string]]::new()
    try {
        if (-not $ModulePath) { $ModulePath = Join-Path $repo 'DeltaMigrate.psd1' }
        Import-Module $ModulePath -ErrorAction Stop
        $resultType = Get-DeltaMigrateType 'DeltaMigrate.Engine.Migration.MigrationResult'
        $report = Get-DeltaMigrateType 'DeltaMigrate.Reports.MigrationReport'
        foreach ($pair in @($groups | Group-Object { "$($_.Row)/$($_.Workload)" } | Sort-Object { $order[$_.Name] })) {
            $list = [Activator]::CreateInstance([Collections.Generic.List[object]].GetGenericTypeDefinition().MakeGenericType($resultType))
            foreach ($g in $pair.Group) {
                $first = $g.Runs | Where-Object { $_.ResultJsonPath -and (Test-Path $_.ResultJsonPath) } | Select-Object -First 1
                if ($first) { $list.Add([Text.Json.JsonSerializer]::Deserialize((Get-Content -Raw $first.ResultJsonPath), $resultType)) }
            }
            if ($list.Count -lt 2) { $chartNotes.Add("$($pair.Name): fewer than two results on disk, no comparison chart."); continue }
            $png = Join-Path $ImageDirectory ("$Name-" + ($pair.Name -replace '[/ ,]+', '-') + '-comparison.png')
            [IO.File]::WriteAllBytes($png, $report::RenderComparisonPng($list, 900, 450))
            $charts[$pair.Name] = $png
        }
    }
    catch { $chartNotes.Add("Comparison charts failed: $($_.Exception.Message)") }

    $cpuModel = ((Get-Content /proc/cpuinfo -ErrorAction Ignore | Where-Object { $_ -like 'model name*' } | Select-Object -First 1) -replace '^model name\s*:\s*', '')
    $memGiB = [math]::Round(((Get-Content /proc/meminfo -ErrorAction Ignore | Select-Object -First 1) -replace '\D', '') / 1MB, 1)
    $wall = if ($RenderFrom) { $renderedWall } else { [math]::Round($benchWatch.Elapsed.TotalSeconds) }
    $isShaped = if ($RenderFrom) { [bool]$loaded.Shaped } else { $shaped }
    $cmdLine = 'dotnet pwsh -NoProfile -File tests/bench/Invoke-MigrationBenchmark.ps1' + $(if ($Quick) { ' -Quick' }) + $(if ($PSBoundParameters.ContainsKey('Repeat')) { " -Repeat $Repeat" })

    # Where Delta loses: against every other mode of the same row and workload, each median in which
    # Delta is worse by more than 10 %, from the numbers above.
    $losses = foreach ($pair in @($groups | Group-Object { "$($_.Row)/$($_.Workload)" } | Sort-Object { $order[$_.Name] })) {
        $d = $pair.Group | Where-Object Mode -EQ 'Delta' | Select-Object -First 1
        if (-not $d) { continue }
        foreach ($o in @($pair.Group | Where-Object Mode -NE 'Delta')) {
            $items = foreach ($metric in @(
                    # Min: the smallest difference worth a line.
                    @{ Name = 'total time'; D = (Get-Median $d.Total); O = (Get-Median $o.Total); Unit = 's'; Both = $true; Min = 0.2 }
                    @{ Name = 'downtime'; D = (Get-Median $d.Downtime); O = (Get-Median $o.Downtime); Unit = 'ms'; Both = $true; Min = 20 }
                    @{ Name = 'wire bytes'; D = (Get-Median $d.Wire); O = (Get-Median $o.Wire); Unit = 'MiB'; Both = $true; Min = 1 }
                    @{ Name = 'engine CPU'; D = (Get-Median $d.CpuEngine); O = (Get-Median $o.CpuEngine); Unit = 's'; Both = $false; Min = 0.2 }
                    @{ Name = 'source QEMU CPU'; D = (Get-Median $d.CpuSrc); O = (Get-Median $o.CpuSrc); Unit = 's'; Both = $false; Min = 0.2 }
                    @{ Name = 'destination QEMU CPU'; D = (Get-Median $d.CpuDst); O = (Get-Median $o.CpuDst); Unit = 's'; Both = $false; Min = 0.2 }
                )) {
                # Time, downtime and bytes compare only when both converged (a cancelled run stops at the timeout).
                if ($metric.Both -and ($d.Converged -lt $d.N -or $o.Converged -lt $o.N)) { continue }
                if ($null -eq $metric.D -or $null -eq $metric.O -or $metric.D -le $metric.O * 1.1 -or $metric.D - $metric.O -lt $metric.Min) { continue }
                $ratio = if ($metric.O -gt 0) { ' ({0:N1}x)' -f ($metric.D / $metric.O) } else { '' }
                '{0} {1:N1} against {2:N1} {3}{4}' -f $metric.Name, $metric.D, $metric.O, $metric.Unit, $ratio
            }
            if ($d.Converged -lt $d.N -and $o.Converged -eq $o.N) { $items = @("does not converge ($($d.Converged)/$($d.N)) where $($o.Label) does") + @($items) }
            if ($items) { "* $($pair.Name) over $($d.Link), against $($o.Label): " + ($items -join '; ') + '.' }
        }
    }

    $md = [Collections.Generic.List[string]]::new()
    $md.Add('# Benchmarks')
    $md.Add('')
    $md.Add("Generated by tests/bench/Invoke-MigrationBenchmark.ps1 ($Name, $([DateTime]::UtcNow.ToString('yyyy-MM-dd')) UTC$(if ($Quick) { ', the reduced -Quick grid' } else { ', the full grid' })); rerun it (``dotnet pwsh ./build.ps1 bench`` as root) to refresh this page. The earlier grid of issue 3 (rows a, b, c), with its discussion, is in [performance.md](performance.md#end-to-end-over-a-shaped-link-issue-3).")
    $md.Add('')
    $md.Add('## How it was run')
    $md.Add('')
    $md.Add("    $cmdLine")
    $md.Add('')
    $md.Add("* Machine: $cpuModel, $([Environment]::ProcessorCount) CPUs, $memGiB GiB RAM, Linux $((& uname -r) -join ''); $((& qemu-system-x86_64 --version) | Select-Object -First 1) under TCG, machine pc-i440fx-7.2.")
    $md.Add("* Wall time of the whole run: $([math]::Floor($wall / 60)) min $($wall % 60) s for $($results.Count) migrations ($Repeat run(s) per cell).")
    $md.Add($(if ($isShaped) { '* Shaped links: each cell runs in the network namespace `' + $Namespace + '`. **100mbit** and **1gbit**: its `lo` (MTU 1500) is shaped with `tbf ' + $shape['100mbit'] + '` or `tbf ' + $shape['1gbit'] + '`, so both QEMUs, QEMU''s own TCP (None, Native) and the tunnel''s TCP (Delta, Lz4) cross the link. **1gbit-20ms**: this kernel has no `sch_netem`, so [tests/bench/delayline](../tests/bench/delayline/delayline.c) carries it: a TUN device (MTU 1500, `tbf ' + $shape['1gbit'] + '`) whose every IPv4 packet comes back after 10 ms with its addresses swapped, so one end-to-end TCP connection sees 20 ms RTT (the migration meets on 10.9.0.1/10.9.0.2 through `$env:DELTAMIGRATE_LOCAL_LINK`). The RTT each cell measured (TCP connect, minimum of 3) is in the JSON (`LinkRttMs`). Both delay-line directions cost CPU on this 2-core machine: a single TCP stream reached about 730 Mbit/s through it (820 Mbit/s with no delay).' }
            else { '* **Unshaped**: not run as root (or with -Unshaped), so the cells ran on the host loopback without tc or the delay line; total time and downtime then say little about a real link.' }))
    if ($Quick) { $md.Add('* Workload (-Quick): 256 MiB VM, the test guest (tests/guest) fills 128 MiB (`ws=128`) with random data, then dirties pages of a 32 MiB hot set (`hot=32`) at 20,000 pages/s: **scatter** changes 16 bytes per page (`bytes=16 pattern=scatter`), **random** rewrites the whole page with random bytes (`pattern=random`), **idle** dirties nothing (`rate=0`). Native uses `-CacheSize 128MB` (the size of Delta''s default cache, half the VM); Delta and Lz4 their defaults. Every cell: `-MaxDowntime 0.3 -Timeout 40 -TimeoutAction Cancel`, migration starts after `DMGUEST ready` and 10 heartbeats (1 s).') }
    else { $md.Add('* Workload: a 512 MiB VM; the test guest (tests/guest) fills 256 MiB (`ws=256`) with random data (the rest stays zero), then dirties pages of a 64 MiB hot set (`hot=64`) at 20,000 pages/s, 78 MiB/s of dirtied pages: more than either link carries. **scatter** changes 16 bytes per page in four scattered words (`bytes=16 pattern=scatter`, the paper''s case), **run** one contiguous run of 256 bytes (`bytes=256 pattern=run`), **random** rewrites whole pages with random bytes (`pattern=random`, delta''s worst case), **idle** dirties nothing (`rate=0`). **scatter-1GiB**: a 1 GiB VM, 512 MiB filled, hot 128 MiB, scatter. Native uses `-CacheSize` of half the VM (what Delta takes by default); Delta and Lz4 their defaults. Every cell: `-MaxDowntime 0.3 -Timeout 60 -TimeoutAction Cancel`; the migration starts after `DMGUEST ready` and 20 heartbeats (2 s).') }
    $md.Add('* Predictions: the first mode''s first run of each row and workload first runs `Measure-KvmVM -Duration 3 -Bandwidth <link> -MaxDowntime 0.3 -CacheSize <half the VM> -Timeout <the cell''s>` on the source (the nominal link rate: 12.5 MB/s or 125 MB/s; the model knows no RTT), waits 10 heartbeats, then migrates.')
    $md.Add('* CPU seconds: the source and destination QEMU from `/proc/<pid>/stat` (utime + stime) just before and after Move-KvmVM; the engine is the pwsh process running Move-KvmVM (and, for Delta and Lz4, the tunnel''s encoder and decoder; both ends run in that one process here), from Process.TotalProcessorTime. The machine has only ' + [Environment]::ProcessorCount + ' CPUs, shared by both QEMUs, the engine and the guest.')
    $md.Add('* "total s" is the module''s TotalTime (for a cancelled run, time to the cancel); when it came back 0 the benchmark''s own clock around Move-KvmVM. Downtime (QEMU''s STOP on the source to RESUME on the destination) only for converged runs. "rounds" is QEMU''s dirty-sync count. With one run per cell the figure is that run; with more, the median and (min-max).')
    $md.Add("* Raw results: tests/bench/results/$Name.json (per run, first and last four rounds).")
    $md.Add('')
    $md.Add('## Results')
    $md.Add('')
    foreach ($line in $summary) { $md.Add($line) }
    $md.Add('')
    if ($predictionTable.Count -gt 2) {
        $md.Add('## Prediction beside measurement')
        $md.Add('')
        $md.Add('Measure-KvmVM''s prediction for each mode (one 3 s sample per row and workload, before its first migration) and what the migrations measured (median (min-max) over the runs; downtime of converged runs only). "nominal" is the prediction for the link''s nominal rate, as the cell asked for it; "carried" predicts again from the same saved sample (`MigrationPrediction.Profile`) at the rate the link really carried here: the median of None''s wire bytes over its total time on that link, given in the first column.')
        $md.Add('')
        foreach ($line in $predictionTable) { $md.Add($line) }
        $md.Add('')
    }
    $md.Add('## Where Delta loses')
    $md.Add('')
    $md.Add('Every median in which Delta is more than 10 % worse than another mode of the same row and workload (time, downtime and bytes only when both converged in every run):')
    $md.Add('')
    if ($losses) { foreach ($l in $losses) { $md.Add($l) } } else { $md.Add('* Nowhere in this run.') }
    $md.Add('')
    $md.Add('## Charts')
    $md.Add('')
    $md.Add('Rendered with DeltaMigrate.Reports.MigrationReport (RenderComparisonPng over the first run of each mode, deserialized from the JSON the cells wrote; RenderRoundsPng inside each cell from the live result).')
    foreach ($n in $chartNotes) { $md.Add(''); $md.Add("_$($n)_") }
    foreach ($pair in @($groups | Group-Object { "$($_.Row)/$($_.Workload)" } | Sort-Object { $order[$_.Name] })) {
        $md.Add('')
        $md.Add("### $($pair.Name) over $($pair.Group[0].Link)")
        $md.Add('')
        if ($charts[$pair.Name]) { $md.Add("![$($pair.Name): remaining MiB over time, all modes]($(& $rel $charts[$pair.Name]))"); $md.Add('') }
        $links = foreach ($g in $pair.Group) {
            foreach ($r in $g.Runs) {
                if ($r.RoundsPng -and (Test-Path (Join-Path $ImageDirectory $r.RoundsPng))) {
                    '[{0}{1}]({2})' -f $g.Label, $(if ($g.N -gt 1) { " run $($r.Rep)" }), (& $rel (Join-Path $ImageDirectory $r.RoundsPng))
                }
            }
        }
        if ($links) { $md.Add('Rounds charts: ' + ($links -join ', ') + '.') }
    }
    # Hand-written notes below this marker survive a rerun (they describe a particular run: keep them in step).
    $marker = '<!-- Hand-written notes below this line are kept when the benchmark rewrites this page. -->'
    $kept = if (Test-Path $Markdown) { $old = Get-Content -Raw $Markdown; $at = $old.IndexOf($marker); if ($at -ge 0) { $old.Substring($at + $marker.Length).Trim("`r", "`n") } }
    $md.Add('')
    $md.Add($marker)
    if ($kept) { $md.Add(''); $md.Add($kept) }
    $md | Set-Content $Markdown
    Write-Host "Wrote $Markdown and $($charts.Count) comparison chart(s) in $ImageDirectory"
}
if (-not $RenderFrom) { Write-Host ("Benchmark wall time: {0:N0} s" -f $benchWatch.Elapsed.TotalSeconds) }
