# Issue 13: libvirt-managed VMs. Two libvirt hosts on this machine (LibvirtHosts.ps1: each its own
# network, mount and UTS namespaces, sshd and libvirtd), joined by a direct link. Move-KvmVM runs in
# a remoting session on h1 (where the source QEMU and its socket folder are), libvirt migrates the
# domain over unix:///run/deltamigrate/... and only the stream goes through our tunnel to h2.
BeforeAll {
    . "$PSScriptRoot/TestHelpers.ps1"
    Import-Module $ModuleUnderTest -Force
    . "$PSScriptRoot/TestHosts.ps1"
    . "$PSScriptRoot/LibvirtHosts.ps1"
    $script:H1 = New-LibvirtTestHost -Name lv1
    $script:H2 = New-LibvirtTestHost -Name lv2
    Connect-TestHost -From $H1 -To $H2
    $script:S1 = New-TestHostSession -TestHost $H1
    Invoke-Command -Session $S1 { Import-Module $using:ModuleUnderTest }

    function Get-DomainState($TestHost, [string] $Name) {
        # virsh's domain state, or $null when that libvirt does not know the domain.
        $out = & virsh -c $TestHost.ConnectionUri domstate $Name 2>$null
        if ($LASTEXITCODE -eq 0) { ($out | Where-Object { $_ } | Select-Object -First 1).Trim() }
    }

    function Move-LibvirtDomain([string] $Name, [hashtable] $Extra = @{}) {
        # Move-KvmVM inside h1, to h2 over SSH (h2's key and pinned host key), through h2's libvirt socket.
        $move = @{
            Libvirt = $true; Name = $Name; ConnectionUri = $H1.ConnectionUri
            DestinationHost = $H2.Address; DestinationUri = $H2.ConnectionUri; SocketDirectory = $H1.SocketDirectory
            UserName = 'root'; KeyFilePath = $H2.KeyFilePath; Confirm = $false; PassThru = $true
            SshOption = @{ UserKnownHostsFile = $H2.KnownHostsFile; GlobalKnownHostsFile = '/dev/null'; StrictHostKeyChecking = 'yes'; BatchMode = 'yes'; IdentitiesOnly = 'yes' }
        } + $Extra
        Invoke-Command -Session $S1 -ArgumentList $move { param($Move) Move-KvmVM @Move }
    }
}

AfterAll {
    if ($H1) { Remove-LibvirtTestHost $H1 }
    if ($H2) { Remove-LibvirtTestHost $H2 }
}

Describe 'Get-KvmVM -Libvirt' {
    It 'lists a libvirt domain with its state, memory, QEMU version and UUID' {
        $d = New-LibvirtTestDomain -TestHost $H1 -Name list1
        $vm = Get-KvmVM -Libvirt -ConnectionUri $H1.ConnectionUri | Where-Object Name -EQ list1
        $vm.State | Should -Be 'Running'
        $vm.MemoryMiB | Should -Be 128
        $vm.QemuVersion | Should -Match '^7\.2\.\d+$'
        $vm.Uuid | Should -Be ([guid](Invoke-LibvirtTestVirsh $H1 domuuid list1 | Where-Object { $_ } | Select-Object -First 1).Trim())
        $vm.ConnectionUri | Should -Be $H1.ConnectionUri
        (Get-KvmVM -Libvirt list* -ConnectionUri $H1.ConnectionUri).Name | Should -Be 'list1'
        Invoke-LibvirtTestVirsh $H1 destroy $d.Name | Out-Null
    }

    It 'says libvirt is not running, and how to start it, when nothing answers at the URI' {
        $uri = "qemu+unix:///system?socket=$($H1.LibvirtRoot)/run/no-such-sock"
        { Get-KvmVM -Libvirt -ConnectionUri $uri -ErrorAction Stop } | Should -Throw -ErrorId 'LibvirtNotRunning*' -ExpectedMessage "*libvirt is not running at $uri*start it*"
    }

    It 'says libvirt is not installed when its library cannot be loaded' {
        # The only stand-in: an environment variable that names the library file, set to a missing one.
        $out = & (Join-Path $PSHOME 'pwsh') -NoProfile -Command "`$env:DELTAMIGRATE_LIBVIRT_LIBRARY = '/nonexistent/libvirt.so.0'; Import-Module '$ModuleUnderTest'; try { Get-KvmVM -Libvirt -ErrorAction Stop } catch { `$_.FullyQualifiedErrorId; `$_.Exception.Message }"
        $out[0] | Should -BeLike 'LibvirtNotInstalled*'
        $out[1] | Should -BeLike '*libvirt is not installed*apt-get install libvirt-clients libvirt-daemon-system*'
    }
}

Describe 'Move-KvmVM of a libvirt domain through our tunnel' {
    It 'moves a running domain with Delta: h2 runs it, h1 no longer, the guest goes on, pages went as XBZRLE' {
        $d = New-LibvirtTestDomain -TestHost $H1 -Name move1
        $result = Move-LibvirtDomain move1 @{ Compress = 'Delta'; Bandwidth = 20MB }
        $result.Status.ToString() | Should -Be 'Completed'
        $result.Mode.ToString() | Should -Be 'Delta'
        $result.Compression.XbzrlePages | Should -BeGreaterThan 0 -Because 'pages QEMU sent again went as deltas against our cache'
        $result.LibvirtJob.DataProcessed | Should -BeGreaterThan 0
        Get-DomainState $H2 move1 | Should -Be 'running'
        Get-DomainState $H1 move1 | Should -BeNullOrEmpty -Because 'a transient domain is gone from the source once libvirt confirmed'
        $serial = Get-LibvirtTestSerialLog -TestHost $H2 -Name move1
        $beat = Get-Heartbeat $serial
        Wait-Until { (Get-Heartbeat $serial) -gt $beat } "the moved guest's heartbeat on h2"
        Invoke-LibvirtTestVirsh $H2 destroy move1 | Out-Null
    }

    It 'leaves the domain running on h1 when our receiving half is killed mid-migration, and libvirt says it failed' {
        $d = New-LibvirtTestDomain -TestHost $H1 -Name cut1
        # Paced to 2 MB/s, the working set takes many seconds: time to cut it in the middle.
        $move = @{
            Libvirt = $true; Name = 'cut1'; ConnectionUri = $H1.ConnectionUri
            DestinationHost = $H2.Address; DestinationUri = $H2.ConnectionUri; SocketDirectory = $H1.SocketDirectory
            UserName = 'root'; KeyFilePath = $H2.KeyFilePath; Confirm = $false; PassThru = $true; Bandwidth = 2MB
            SshOption = @{ UserKnownHostsFile = $H2.KnownHostsFile; GlobalKnownHostsFile = '/dev/null'; StrictHostKeyChecking = 'yes'; BatchMode = 'yes'; IdentitiesOnly = 'yes' }
        }
        $job = Invoke-Command -Session $S1 -ArgumentList $move -AsJob { param($Move) Move-KvmVM @Move }
        Wait-Until {
            $info = & virsh -c $H1.ConnectionUri domjobinfo cut1 2>$null | Select-String 'Data processed:\s+([\d.]+) MiB'
            $info -and [double]$info.Matches[0].Groups[1].Value -gt 4
        } 'libvirt job of cut1 to have moved 4 MiB' -TimeoutSeconds 60
        # The receiving half runs in the remote pwsh that Move-KvmVM opened on h2: kill it.
        $pwsh = Get-TestHostNamespacePids $H2.Namespace | Where-Object { (Get-Content "/proc/$_/cmdline" -Raw -ErrorAction Ignore) -match 'pwsh' }
        $pwsh | Should -Not -BeNullOrEmpty
        $pwsh | ForEach-Object { & kill -KILL $_ }
        $null = Wait-Job $job -Timeout 120
        $failure = $null
        $out = Receive-Job $job -ErrorAction SilentlyContinue -ErrorVariable failure
        Remove-Job $job -Force
        $out | Where-Object { $_.PSObject.Properties['Status'] } | Should -BeNullOrEmpty -Because 'no result: the migration failed'
        $failure | Should -Not -BeNullOrEmpty
        $failure[0].FullyQualifiedErrorId | Should -BeLike 'LibvirtMigrationFailed*'
        "$($failure[0])" | Should -BeLike '*running on the source*'
        Get-DomainState $H1 cut1 | Should -Be 'running'
        Get-DomainState $H2 cut1 | Should -BeNullOrEmpty -Because 'libvirt removed the half-prepared destination'
        $beat = Get-Heartbeat $d.SerialLog
        Wait-Until { (Get-Heartbeat $d.SerialLog) -gt $beat } 'the guest on h1 to go on after the failed migration'
        Invoke-LibvirtTestVirsh $H1 destroy cut1 | Out-Null
    }
}
